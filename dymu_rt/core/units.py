"""Cost units, in one place: a tree's cost is stored as multiply-accumulates (MACs).

* GMACs  = conv + linear MACs / 1e9;
* GFLOPs = 2 FLOPs per MAC: 2 x MACs / 1e9;
* sizes of files and memory are MiB (2**20 bytes) everywhere: :func:`mib`;
* GFLOPs (paper) = fvcore's count / 1e9, the paper's "GFLOPs": MACs plus BatchNorm, bilinear
  upsampling and adaptive pooling (dymu_rt.models.cost; 3-4 % above GMACs for MobileNetV2).
"""

from __future__ import annotations


def gmacs(macs: int | float) -> float:
    """Conv + linear multiply-accumulates / 1e9."""
    return macs / 1e9


def gflops(macs: int | float) -> float:
    """Floating-point operations / 1e9, counting 2 FLOPs per MAC."""
    return 2 * macs / 1e9


def gflops_paper(flops_paper: int | float) -> float:
    """fvcore's count (the paper's "GFLOPs") / 1e9."""
    return flops_paper / 1e9


def mib(n_bytes: int | float) -> float:
    """Bytes -> MiB (2**20 bytes), the one size unit dymu-rt prints."""
    return n_bytes / 2**20
