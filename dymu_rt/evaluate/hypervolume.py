"""Exact hypervolume of a set of loss vectors (minimization), for any number of objectives.

HV(P, ref) = Lebesgue measure of ∪_{p∈P} [p, ref): the region dominated by the points and
bounded by the reference point. Larger is better. A point that does not strictly dominate
the reference (p_m >= ref_m for some m) bounds an empty box and contributes nothing.

Algorithm: HSO-style slicing (While et al., 2006). Sort the points by the last objective;
between consecutive distinct values the dominated region is a prism whose cross-section is
the (M-1)-dimensional hypervolume of the points seen so far. Dominated points are dropped
at every level, and the 2-D case is a sort-and-sweep. Exact in float arithmetic up to
summation rounding; O(K^(M-1) log K) in the worst case — fine for the tens to hundreds of
preferences an evaluation uses, not for thousands of points in 5+ objectives.
"""

from __future__ import annotations

import numpy as np

from dymu_rt.core.errors import ValidationError


def _nondominated(points: np.ndarray) -> np.ndarray:
    """Rows not weakly dominated by another row (duplicates kept once)."""
    pts = np.unique(points, axis=0)
    keep = np.ones(len(pts), dtype=bool)
    for i in range(len(pts)):
        if not keep[i]:
            continue
        dominated = np.all(pts[i] <= pts, axis=1) & np.any(pts[i] < pts, axis=1)
        keep &= ~dominated
    return pts[keep]


def _hv2(points: np.ndarray, ref: np.ndarray) -> float:
    order = np.argsort(points[:, 0], kind="stable")
    volume, best_y = 0.0, ref[1]
    for x, y in points[order]:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return volume


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    m = points.shape[1]
    if m == 1:
        return float(ref[0] - points[:, 0].min())
    if m == 2:
        return _hv2(points, ref)
    points = _nondominated(points)
    order = np.argsort(points[:, -1], kind="stable")
    pts = points[order]
    volume = 0.0
    for i in range(len(pts)):
        top = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = top - pts[i, -1]
        if depth > 0:
            volume += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return volume


def hypervolume(points, reference) -> float:
    """Exact hypervolume of ``points`` [K, M] w.r.t. ``reference`` [M] (minimization)."""
    p = np.asarray(points, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if p.ndim == 1:
        p = p[None, :] if p.size else p.reshape(0, ref.size)
    if p.ndim != 2 or p.shape[1] != ref.size:
        raise ValidationError(f"hypervolume: points have shape {list(p.shape)} but the reference point "
                              f"has {ref.size} values; expected one value per objective (task)")
    if not np.isfinite(ref).all():
        raise ValidationError(f"hypervolume: reference point {ref.tolist()} must be finite")
    if np.isnan(p).any():
        raise ValidationError("hypervolume: points contain NaN")
    inside = np.all(p < ref, axis=1)
    return float(_hv(p[inside], ref))
