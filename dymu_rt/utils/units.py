"""Cost units, in one place: a tree's cost is stored as multiply-accumulates (MACs).

* GMACs  = MACs / 1e9: what the paper's tables call "GFLOPs" (fvcore's convention);
* GFLOPs = 2 FLOPs per MAC: 2 x MACs / 1e9.
"""

from __future__ import annotations


def gmacs(macs: int | float) -> float:
    """Multiply-accumulates / 1e9 (the paper's "GFLOPs")."""
    return macs / 1e9


def gflops(macs: int | float) -> float:
    """Floating-point operations / 1e9, counting 2 FLOPs per MAC."""
    return 2 * macs / 1e9
