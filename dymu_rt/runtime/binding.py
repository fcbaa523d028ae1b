"""A preference's BN weights for one topology, from ``fold_params`` and the weight hypernet.

docs/INTERFACES.md "Binding": s = (γ+Δγ)/σ, W' = W·s, b' = (β+Δβ) + (b_conv − μ)·s. The
formula itself lives in :func:`dymu_rt.core.bn_fold.fold_conv_bn_tensors` (no torch); this module only
shapes its results for the two kinds of engine (``OrtEngine.weight_kind``):

* ``folded``: ``<slot>.conv.weight`` = W', ``<slot>.conv.bias`` = b';
* ``affine``: ``<slot>.scale`` = s and ``<slot>.shift`` = b' (the conv keeps the raw W):
  the same formula applied to a weight of ones gives s.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from dymu_rt.bundle.weight_pool import load_fold_params  # noqa: F401  (re-exported: the runtime's reader)
from dymu_rt.core.errors import BundleError
from dymu_rt.core import bn_fold as fold


def raw_weights(params: Mapping[str, np.ndarray], slots: Sequence[str]) -> dict[str, np.ndarray]:
    """The raw conv weights ``<slot>.weight`` of ``slots`` (what an affine engine's graph holds)."""
    return {f"{s}.weight": params[f"{s}.weight"] for s in slots}


def slot_weights(params: Mapping[str, np.ndarray], layout: Sequence[Mapping], deltas: np.ndarray,
                 eps: float, slots: Sequence[str], kind: str) -> dict[str, np.ndarray]:
    """Weights of ``slots`` at BN deltas ``deltas`` [D], for an engine of ``kind``
    (:func:`dymu_rt.core.bn_fold.slot_weights`; a slot missing from the layout is a BundleError)."""
    try:
        return fold.slot_weights(params, layout, deltas, eps, slots, kind)
    except KeyError as e:
        raise BundleError(f"topology names BN slots that bn_layout lacks ({e}); rebuild the bundle") from None


def affine_plan(params: Mapping[str, np.ndarray], layout: Sequence[Mapping], eps: float,
                slots: Sequence[str]) -> fold.AffinePlan:
    """The vectorized ``affine`` binding of ``slots`` (:class:`dymu_rt.core.bn_fold.AffinePlan`:
    bitwise :func:`slot_weights` of kind ``affine``, built once per topology)."""
    try:
        return fold.AffinePlan(params, layout, eps, slots)
    except KeyError as e:
        raise BundleError(f"topology names BN slots that bn_layout lacks ({e}); rebuild the bundle") from None
