"""The torch-free core: what both wings share, in the standard library, numpy and Pillow.

* errors, atomic file I/O and hashing (``io``), limits on untrusted sizes (``limits``),
  thread-count checks (``threads``), units (``units``), safetensors without torch
  (``safetensors_np``), images in and out (``images``), C-heap growth of a call (``heap``,
  what an OpenVINO engine is charged in the engine cache);
* preferences and grids (``preference``), the one selector of "preference -> topology and
  weights" (``selector``) and the Triton router's use of it (``routing``);
* trees and topology ids (``tree``), the BN-folding formula on arrays (``bn_fold``);
* task kinds and their pictures (``kinds``, ``render``, ``legends``, ``colormaps``,
  ``labels``, ``overview``).

Rules (checked by ``lint-imports``, see ``.importlinter``): core imports no other dymu_rt
package and never torch, matplotlib or scipy; its modules import each other *relatively*,
so ``dymu-rt export triton`` copies the files the router needs byte for byte
(:mod:`dymu_rt.serve.triton.vendor`). This file stays free of imports.
"""
