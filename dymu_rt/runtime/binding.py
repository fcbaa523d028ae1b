"""A preference's BN weights for one topology, from ``fold_params`` and the weight hypernet.

docs/INTERFACES.md "Binding": s = (γ+Δγ)/σ, W' = W·s, b' = (β+Δβ) + (b_conv − μ)·s. The
formula itself lives in :func:`dymu_rt.models.fold.fold_conv_bn_tensors` (no torch); this module only
shapes its results for the two kinds of engine (``OrtEngine.weight_kind``):

* ``folded``: ``<slot>.conv.weight`` = W', ``<slot>.conv.bias`` = b';
* ``affine``: ``<slot>.scale`` = s and ``<slot>.shift`` = b' (the conv keeps the raw W):
  the same formula applied to a weight of ones gives s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dymu_rt.errors import BundleError
from dymu_rt.models import fold


def load_fold_params(path: Path) -> dict[str, np.ndarray]:
    """The bundle's ``fold_params.safetensors`` as float32 numpy arrays (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return {k: np.asarray(v, np.float32) for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path}: cannot read fold parameters ({e}); rebuild the bundle") from None


def raw_weights(params: Mapping[str, np.ndarray], slots: Sequence[str]) -> dict[str, np.ndarray]:
    """The raw conv weights ``<slot>.weight`` of ``slots`` (what an affine engine's graph holds)."""
    return {f"{s}.weight": params[f"{s}.weight"] for s in slots}


def slot_weights(params: Mapping[str, np.ndarray], layout: Sequence[Mapping], deltas: np.ndarray,
                 eps: float, slots: Sequence[str], kind: str) -> dict[str, np.ndarray]:
    """Weights of ``slots`` at BN deltas ``deltas`` [D], for an engine of ``kind``
    (:func:`dymu_rt.models.fold.slot_weights`; a slot missing from the layout is a BundleError)."""
    try:
        return fold.slot_weights(params, layout, deltas, eps, slots, kind)
    except KeyError as e:
        raise BundleError(f"topology names BN slots that bn_layout lacks ({e}); rebuild the bundle") from None
