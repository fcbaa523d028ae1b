"""The BN-folding formula on arrays (numpy or torch alike): no torch import, so a runtime
binds a preference's weights with it on a device without torch.

With σ = sqrt(var + eps) and the BN's affine shifted by the weight hypernet's (Δγ, Δβ)
(DESIGN.md §1: BN(x) = (γ+Δγ)(x−μ)/σ + (β+Δβ))::

    s  = (γ + Δγ) / σ
    W' = W · s[:, None, None, None]
    b' = (β + Δβ) + (b_conv − μ) · s

:func:`fold_conv_bn_tensors` is the formula; :func:`slot_weights` applies it to a bundle's
``fold_params`` for one topology's slots (docs/INTERFACES.md, "Binding"). The module walk
that folds a torch model in place is :mod:`dymu_rt.compile.fold_modules`, on this same formula.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

#: weight kinds an engine takes (``Engine.weight_kind``)
WEIGHT_KINDS = ("folded", "affine")


def fold_conv_bn_tensors(weight, conv_bias, bn_weight, bn_bias, bn_mean, bn_var, eps: float,
                         d_gamma=None, d_beta=None):
    """Folded (W', b') from raw conv + BN tensors (torch tensors or numpy arrays alike)."""
    gamma = bn_weight if d_gamma is None else bn_weight + d_gamma
    beta = bn_bias if d_beta is None else bn_bias + d_beta
    scale = gamma / (bn_var + eps) ** 0.5
    shape = (-1,) + (1,) * (weight.ndim - 1)
    w = weight * scale.reshape(shape)
    b0 = -bn_mean if conv_bias is None else conv_bias - bn_mean
    return w, beta + b0 * scale


def slot_weights(params: Mapping[str, np.ndarray], layout: Sequence[Mapping], deltas: np.ndarray,
                 eps: float, slots: Optional[Sequence[str]] = None, kind: str = "folded") -> dict[str, np.ndarray]:
    """Weights of ``slots`` (default: every slot of ``layout``) at BN deltas ``deltas`` [D].

    ``params`` is a bundle's fold_params (``<slot>.weight``, ``.conv_bias`` (optional),
    ``.bn_weight``, ``.bn_bias``, ``.bn_mean``, ``.bn_var``), ``layout`` its ``bn_layout``
    (name / channels / offset; Δγ at ``offset``, Δβ right after it). ``kind``:

    * ``folded``: ``<slot>.conv.weight`` = W', ``<slot>.conv.bias`` = b';
    * ``affine``: ``<slot>.scale`` = s and ``<slot>.shift`` = b' (the conv keeps the raw W):
      the same formula applied to a weight of ones gives s.

    float32 out. A slot that ``layout`` lacks raises KeyError (the caller's bundle is bad).
    """
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weight kind {kind!r}; expected one of {WEIGHT_KINDS}")
    deltas = np.asarray(deltas, np.float32).reshape(-1)
    wanted = None if slots is None else set(slots)
    out: dict[str, np.ndarray] = {}
    for s in layout:
        name = s["name"]
        if wanted is not None and name not in wanted:
            continue
        c, o = int(s["channels"]), int(s["offset"])
        w = np.asarray(params[f"{name}.weight"], np.float32)
        if kind == "affine":
            w = np.ones((w.shape[0],), np.float32)
        bias = params.get(f"{name}.conv_bias")
        w2, b2 = fold_conv_bn_tensors(
            w, None if bias is None else np.asarray(bias, np.float32),
            np.asarray(params[f"{name}.bn_weight"], np.float32), np.asarray(params[f"{name}.bn_bias"], np.float32),
            np.asarray(params[f"{name}.bn_mean"], np.float32), np.asarray(params[f"{name}.bn_var"], np.float32),
            float(eps), deltas[o:o + c], deltas[o + c:o + 2 * c])
        key_w, key_b = ("scale", "shift") if kind == "affine" else ("conv.weight", "conv.bias")
        out[f"{name}.{key_w}"] = np.ascontiguousarray(w2, np.float32)
        out[f"{name}.{key_b}"] = np.ascontiguousarray(b2, np.float32)
    if wanted is not None:
        missing = wanted - {s["name"] for s in layout}
        if missing:
            raise KeyError(f"slots {sorted(missing)[:3]} are not in bn_layout")
    return out


class AffinePlan:
    """:func:`slot_weights` of kind ``affine`` for one fixed list of slots, vectorized.

    Everything that does not depend on the deltas (each channel's γ, β, σ = sqrt(var + eps),
    b_conv − μ and where its Δγ / Δβ sit in the deltas vector) is gathered once into flat
    arrays; a call then costs two gathers and four vector operations over all channels of
    the slots, into one new buffer whose per-slot views are returned (a binding is
    immutable: every call returns fresh arrays). The same float32 operations in the same
    order as :func:`fold_conv_bn_tensors`, so results are bitwise those of
    :func:`slot_weights`. Measured at pascal3 (120 slots, 45k channels): 0.88 ms -> ~0.05 ms.
    """

    def __init__(self, params: Mapping[str, np.ndarray], layout: Sequence[Mapping], eps: float,
                 slots: Sequence[str]) -> None:
        by_name = {s["name"]: s for s in layout}
        missing = [s for s in slots if s not in by_name]
        if missing:
            raise KeyError(f"slots {sorted(missing)[:3]} are not in bn_layout")
        gamma, beta, sigma, b0, dg, db = [], [], [], [], [], []
        self.slots: list[tuple[str, int, int]] = []      # (name, start, channels) in the flat arrays
        start = 0
        for name in slots:
            s = by_name[name]
            c, o = int(s["channels"]), int(s["offset"])
            f32 = (lambda k: np.asarray(params[f"{name}.{k}"], np.float32).reshape(-1))
            bias = params.get(f"{name}.conv_bias")
            mean = f32("bn_mean")
            gamma.append(f32("bn_weight"))
            beta.append(f32("bn_bias"))
            sigma.append((f32("bn_var") + np.float32(float(eps))) ** 0.5)
            b0.append(-mean if bias is None else np.asarray(bias, np.float32).reshape(-1) - mean)
            dg.append(np.arange(o, o + c, dtype=np.int32))
            db.append(np.arange(o + c, o + 2 * c, dtype=np.int32))
            self.slots.append((name, start, c))
            start += c
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt))
        self._gamma, self._beta = cat(gamma, np.float32), cat(beta, np.float32)
        self._sigma, self._b0 = cat(sigma, np.float32), cat(b0, np.float32)
        self._dg, self._db = cat(dg, np.int32), cat(db, np.int32)
        self.channels = start
        self.nbytes = sum(a.nbytes for a in (self._gamma, self._beta, self._sigma, self._b0, self._dg, self._db))

    def __call__(self, deltas: np.ndarray) -> dict[str, np.ndarray]:
        """``<slot>.scale`` / ``<slot>.shift`` ([C] float32 views of one new buffer) at ``deltas``."""
        d = np.asarray(deltas, np.float32).reshape(-1)
        n = self.channels
        buf = np.empty(2 * n, np.float32)
        scale, shift = buf[:n], buf[n:]
        np.add(self._gamma, d[self._dg], out=scale)
        np.divide(scale, self._sigma, out=scale)
        np.add(self._beta, d[self._db], out=shift)
        shift += self._b0 * scale
        out: dict[str, np.ndarray] = {}
        for name, i, c in self.slots:
            out[f"{name}.scale"] = scale[i:i + c]
            out[f"{name}.shift"] = shift[i:i + c]
        return out
