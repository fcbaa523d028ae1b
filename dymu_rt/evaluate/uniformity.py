"""Uniformity μ_r of a loss vector under a preference (paper §4, from Mahapatra & Rajan, 2020).

μ_r(L) = 1 − KL(L̂ ‖ 1/N), L̂_j = r_j L_j / Σ_i r_i L_i. It is 1 when the preference-weighted
losses are equal — the solution sits on the ray the preference points at — and falls as
they spread. KL uses the natural log, so for N >= 3 μ_r can be negative (KL <= log N).

Zero entries: a term with L̂_j = 0 (r_j = 0 or L_j = 0) contributes 0 (0 · log 0 = 0, the
limit). When every r_j L_j is 0, L̂ is undefined and a ValueError is raised.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def uniformity(r, losses) -> float:
    """μ_r = 1 − KL(L̂ ‖ uniform) for one preference ``r`` [N] and loss vector ``losses`` [N]."""
    r = np.asarray(r, dtype=np.float64).reshape(-1)
    loss = np.asarray(losses, dtype=np.float64).reshape(-1)
    if r.shape != loss.shape:
        raise ValueError(f"uniformity: r has {r.size} entries but losses has {loss.size}")
    if np.any(r < 0) or np.any(loss < 0) or not (np.isfinite(r).all() and np.isfinite(loss).all()):
        raise ValueError(f"uniformity: r {r.tolist()} and losses {loss.tolist()} must be finite and >= 0")
    weighted = r * loss
    total = weighted.sum()
    if total <= 0:
        raise ValueError(f"uniformity: every r_j L_j is 0 (r {r.tolist()}, losses {loss.tolist()}); "
                         "the normalized loss is undefined")
    p = weighted / total
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] * r.size)))
    return 1.0 - kl


def mean_uniformity(rs: Sequence, losses: Sequence) -> float:
    """Mean of :func:`uniformity` over paired preferences ``rs`` [P, N] and losses [P, N]."""
    if len(rs) != len(losses) or len(rs) == 0:
        raise ValueError(f"mean_uniformity: {len(rs)} preferences and {len(losses)} loss vectors; "
                         "expected the same, non-zero number")
    return float(np.mean([uniformity(r, l) for r, l in zip(rs, losses)]))
