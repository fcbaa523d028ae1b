"""Fold (modulated) BatchNorm into the preceding convolution, for deployment.

One walk over modules (the habit of timm's ``reparameterize_model``), not a special case per
model: every :class:`~dymu_rt.models.layers.ConvBN` becomes a biased conv followed by
``nn.Identity``. With σ = sqrt(var + eps) and the BN's affine shifted by the weight
hypernet's (Δγ, Δβ) (zero for plain BNs)::

    s  = (γ + Δγ) / σ
    W' = W · s[:, None, None, None]
    b' = (β + Δβ) + (b_conv − μ) · s

The formula itself lives in :mod:`dymu_rt.core.bn_fold` (no torch): applied to the raw
tensors stored in a bundle's ``fold_params`` (:func:`dymu_rt.core.bn_fold.slot_weights`), it is
what a runtime uses to bind another preference's weights into a topology graph without
re-exporting it (docs/INTERFACES.md, "Binding a point's weights").

Only eval-mode semantics are folded (running statistics); folding a module in training
mode would change what it computes, so it is refused.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
import torch.nn as nn

from dymu_rt.bundle.weight_pool import needs_raw_copy
from dymu_rt.core.bn_fold import fold_conv_bn_tensors
from dymu_rt.models.layers import ConvBN, ModulatedBatchNorm2d

Deltas = tuple[torch.Tensor, torch.Tensor]


@torch.no_grad()
def fold_convbn(unit: ConvBN, deltas: Optional[Deltas] = None) -> None:
    """Fold ``unit.bn`` (shifted by ``deltas`` or by a delta set on it) into ``unit.conv``."""
    bn = unit.bn
    if isinstance(bn, nn.Identity):
        return                                   # already folded
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"cannot fold {type(bn).__name__} into a conv")
    if bn.training:
        raise ValueError("BN folding needs eval mode (running statistics); call .eval() first")
    if deltas is None and isinstance(bn, ModulatedBatchNorm2d) and bn.delta is not None:
        deltas = bn.delta
    dg, db = (None, None) if deltas is None else deltas
    conv = unit.conv
    # A BN without affine parameters (PASCAL's last BNs) is γ = 1, β = 0.
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    w, b = fold_conv_bn_tensors(conv.weight, conv.bias, gamma, beta, bn.running_mean,
                                bn.running_var, bn.eps, dg, db)
    conv.weight = nn.Parameter(w.detach().clone(), requires_grad=False)
    conv.bias = nn.Parameter(b.detach().clone(), requires_grad=False)
    unit.bn = nn.Identity()


def fold_bn(module: nn.Module, deltas: Optional[Mapping[str, Deltas]] = None) -> nn.Module:
    """Fold every ConvBN of ``module`` in place; returns ``module``.

    ``deltas`` maps a ConvBN's module path inside ``module`` (for a materialized tree exactly
    the BNSlot name, e.g. ``node3_1.conv1``) to its (Δγ, Δβ); ConvBNs not in it fold
    their BN as is. A name in ``deltas`` that is not a ConvBN of ``module`` is a bug and
    raises KeyError.
    """
    units = [(name, m) for name, m in module.named_modules() if isinstance(m, ConvBN)]
    if deltas:
        unknown = set(deltas) - {name for name, _ in units}
        if unknown:
            raise KeyError(f"deltas for unknown ConvBNs: {sorted(unknown)[:3]}")
    for name, unit in units:
        fold_convbn(unit, None if deltas is None else deltas.get(name))
    return module


# -- raw fold parameters and binding (the bundle side of the same formula) ----------------------

def fold_params(anchor, slots: Optional[Sequence] = None, raw: str = "all") -> dict[str, torch.Tensor]:
    """Raw tensors every modulated slot needs to fold any preference's weights.

    Keys per slot ``name``: ``name.weight`` (raw conv weight), ``name.conv_bias`` (only if
    the conv has one), ``name.bn_weight``, ``name.bn_bias``, ``name.bn_mean``,
    ``name.bn_var``. Stored as ``controller/fold_params.safetensors`` in a bundle.

    ``raw="unrecoverable"`` (what a bundle stores, schema 3) keeps ``name.weight`` only for
    slots whose raw weight cannot be recovered from the anchor-folded conv weight the
    bundle's weights file already holds (a BN scale γ/σ of 0 wipes a channel:
    :func:`dymu_rt.bundle.weight_pool.needs_raw_copy`); every other raw weight is derived
    from that one copy at run time, so no tensor is stored twice.
    """
    if raw not in ("all", "unrecoverable"):
        raise ValueError(f"raw={raw!r}: expected 'all' or 'unrecoverable'")
    out: dict[str, torch.Tensor] = {}
    for s in slots if slots is not None else anchor.bn_layout:
        unit = slot_module(anchor, s)
        conv, bn = unit.conv, unit.bn
        stats = {"bn_weight": bn.weight, "bn_var": bn.running_var}
        if raw == "all" or needs_raw_copy({f"{s.name}.{k}": v.detach().float().numpy() for k, v in stats.items()},
                                          s.name, float(bn.eps)):
            out[f"{s.name}.weight"] = conv.weight.detach().float().contiguous().clone()
        if conv.bias is not None:
            out[f"{s.name}.conv_bias"] = conv.bias.detach().float().contiguous().clone()
        out[f"{s.name}.bn_weight"] = bn.weight.detach().float().contiguous().clone()
        out[f"{s.name}.bn_bias"] = bn.bias.detach().float().contiguous().clone()
        out[f"{s.name}.bn_mean"] = bn.running_mean.detach().float().contiguous().clone()
        out[f"{s.name}.bn_var"] = bn.running_var.detach().float().contiguous().clone()
    return out


def slot_module(anchor, slot) -> ConvBN:
    """The anchor's ConvBN behind a BNSlot (name ``node{l}_{j}.<path>`` or ``head_<task>.<path>``)."""
    _, path = slot.name.split(".", 1)
    unit = anchor.slot_owner(slot).get_submodule(path)
    if not isinstance(unit, ConvBN):
        raise TypeError(f"slot {slot.name} is not a ConvBN")
    return unit


def bn_eps(anchor) -> float:
    """The one BN epsilon of the anchor's modulated BNs (a bundle records a single value)."""
    eps = {float(slot_module(anchor, s).bn.eps) for s in anchor.bn_layout}
    if len(eps) > 1:
        raise ValueError(f"modulated BNs use several eps values {sorted(eps)}; the bundle needs one")
    return eps.pop() if eps else 1e-5
