"""Building blocks shared by every backbone and head.

Every Conv -> BatchNorm pair in dymu-rt models is a :class:`ConvBN`, so that BN folding
(:mod:`dymu_rt.compile.fold_modules`) is one walk over modules and the weight hypernet's BN
modulation has one place to act. BatchNorms of backbone nodes are
:class:`ModulatedBatchNorm2d`: BN(x) = (γ+Δγ)(x−μ)/σ + (β+Δβ) (paper, weight hypernet).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class ModulatedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose affine parameters can be shifted by (Δγ, Δβ) for one forward.

    The deltas are set by :func:`modulate` around a node's forward; when unset this is a
    plain BatchNorm2d.
    """

    def __init__(self, num_features: int, **kw) -> None:
        super().__init__(num_features, **kw)
        self.delta: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.delta is None:
            return super().forward(x)
        dg, db = self.delta
        # Same statistics as nn.BatchNorm2d (batch stats in training, running stats in
        # eval); only the affine parameters are shifted.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight + dg,
                            self.bias + db, self.training,
                            self.momentum if self.momentum is not None else 0.0, self.eps)


@contextlib.contextmanager
def modulate(bns: Sequence[ModulatedBatchNorm2d], deltas: Optional[Sequence[tuple]]) -> Iterator[None]:
    """Set (Δγ, Δβ) on ``bns`` for the duration of the block (no-op when ``deltas`` is None)."""
    if deltas is None:
        yield
        return
    try:
        for bn, d in zip(bns, deltas, strict=True):
            bn.delta = d
        yield
    finally:
        for bn in bns:
            bn.delta = None


class ConvBN(nn.Module):
    """Conv2d (no bias) followed by BatchNorm; the unit BN folding acts on.

    ``modulated=True`` (nodes and light decoder heads) uses :class:`ModulatedBatchNorm2d`.
    ``affine=False`` gives a BN without γ/β (BMTAS's PASCAL nets: the last BN of every
    inverted residual and of the R-ASPP projection); it has nothing to modulate, so it is
    a plain BatchNorm2d whatever ``modulated`` says. After folding (``dymu_rt.compile.fold_modules``) ``bn`` becomes ``nn.Identity`` and ``conv``
    carries the bias.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1, modulated: bool = True, affine: bool = True) -> None:
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation,
                              groups=groups, bias=False)
        if not affine:
            self.bn: nn.Module = nn.BatchNorm2d(cout, affine=False)
        else:
            self.bn = ModulatedBatchNorm2d(cout) if modulated else nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.bn(self.conv(x))


class Resize(nn.Module):
    """Bilinear resize to a given size (align_corners=False), as a module so that cost
    counters see it (fvcore counts 4 FLOPs per output element of a bilinear upsample)."""

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:  # noqa: D102
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def modulated_bns(module: nn.Module) -> list[tuple[str, ModulatedBatchNorm2d]]:
    """The (ConvBN path, BN) pairs of ``module`` in a deterministic order (module order)."""
    out = []
    for name, m in module.named_modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, ModulatedBatchNorm2d):
            out.append((name, m.bn))
    return out
