"""Runtime: a bundle's engines switched per preference (r, c), with caching, latency
measurement and latency-budget choice.

* ``runtime``     :class:`Runtime` (open/set_preference/infer/stats/profile) and
  :func:`default_bundle_path` (from :mod:`dymu_rt.bundle.layout`). No backend names,
  no torch: backends are asked for capabilities (:mod:`dymu_rt.backends.base`).
* ``controller``  edge/weight hypernets (ONNX) -> exact tree and BN deltas.
* ``binding``     a preference's BN weights for one topology, from ``fold_params``.
* ``cache``       LRU of engines bounded in bytes.
* ``latency``     percentiles, timing, :func:`choose_for_budget`.
* ``preprocess``  images of any mode/size -> the graphs' input.
* ``outputs``     per-task PNGs and the overview picture of a result (numpy/PIL); the
  run-images use case built on it is :mod:`dymu_rt.app.run_images`.
"""

from dymu_rt.bundle.layout import default_bundle_path
from dymu_rt.runtime.runtime import Runtime

__all__ = ["Runtime", "default_bundle_path"]
