"""Vectorized ray/primitive intersections for the procedural scenes.

Every function takes ray origins ``o`` (shape (3,) or (P, 3)) and directions ``d``
(P, 3), not necessarily unit length, and returns the ray parameter ``t`` of the nearest
hit in front of the origin (``t > eps``), ``inf`` where the ray misses. Because the
primary rays are built with a camera-frame z component of 1, their ``t`` *is* the
z-depth in metres (see :mod:`dymu_rt.data.synth`).

World frame: x right, y up (floor at y = 0), z away from the camera's start. Boxes and
cylinders stand upright; boxes may be rotated about the vertical axis (yaw).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def _nearest_positive(*ts: np.ndarray) -> np.ndarray:
    """Elementwise smallest candidate that is > EPS (inf if none)."""
    out = np.full(np.broadcast(*ts).shape, np.inf)
    for t in ts:
        ok = (t > EPS) & (t < out)
        out = np.where(ok, t, out)
    return out


def hit_sphere(o, d, center, radius) -> np.ndarray:
    """Nearest hit of rays with a sphere (hits from the outside)."""
    oc = o - center
    a = np.einsum("...i,...i->...", d, d)
    b = 2.0 * np.einsum("...i,...i->...", d, oc)
    c = np.einsum("...i,...i->...", oc, oc) - radius * radius
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        t0 = (-b - sq) / (2.0 * a)
        t1 = (-b + sq) / (2.0 * a)
    t0 = np.where(np.isnan(t0), np.inf, t0)
    t1 = np.where(np.isnan(t1), np.inf, t1)
    return _nearest_positive(t0, t1)


def sphere_normal(p, center) -> np.ndarray:
    """Outward unit normal of a sphere at surface points ``p`` (P, 3)."""
    n = p - center
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def to_local(v, yaw: float) -> np.ndarray:
    """Rotate world vectors into a frame turned by ``yaw`` about the vertical axis."""
    cs, sn = np.cos(yaw), np.sin(yaw)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([cs * x + sn * z, y, -sn * x + cs * z], axis=-1)


def to_world(v, yaw: float) -> np.ndarray:
    """Inverse of :func:`to_local`."""
    return to_local(v, -yaw)


def hit_box(o, d, center, half, yaw: float) -> np.ndarray:
    """Nearest hit of rays with an upright box turned by ``yaw`` (slab test)."""
    ol = to_local(np.asarray(o, dtype=np.float64) - center, yaw)
    dl = to_local(d, yaw)
    tmin = np.full(dl.shape[:-1], -np.inf)
    tmax = np.full(dl.shape[:-1], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            oa, da = ol[..., a], dl[..., a]
            t1 = (-half[a] - oa) / da
            t2 = (half[a] - oa) / da
            # fmax/fmin skip the NaN of a ray lying exactly in a face plane.
            tmin = np.fmax(tmin, np.minimum(t1, t2))
            tmax = np.fmin(tmax, np.maximum(t1, t2))
    hit = (tmax >= tmin) & (tmax > EPS)
    # Origins inside a box (shadow rays start on surfaces) exit at tmax.
    t = np.where(tmin > EPS, tmin, tmax)
    return np.where(hit, t, np.inf)


def box_normal(p, center, half, yaw: float) -> np.ndarray:
    """Outward unit normal of a box at surface points: the face whose plane is nearest."""
    pl = to_local(p - center, yaw)
    dist = np.abs(np.abs(pl) - half)           # distance to each pair of face planes
    axis = np.argmin(dist, axis=-1)
    n = np.zeros_like(pl)
    rows = np.arange(len(pl))
    n[rows, axis] = np.sign(pl[rows, axis])
    return to_world(n, yaw)


def hit_cylinder(o, d, center_xz, radius: float, y0: float, y1: float) -> np.ndarray:
    """Nearest hit of rays with an upright capped cylinder, y in [y0, y1]."""
    o = np.asarray(o, dtype=np.float64)
    ox, oy, oz = o[..., 0] - center_xz[0], o[..., 1], o[..., 2] - center_xz[1]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dz * dz
    b = 2.0 * (ox * dx + oz * dz)
    c = ox * ox + oz * oz - radius * radius
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.sqrt(np.where(disc >= 0.0, disc, np.nan))
        cands = []
        for sgn in (-1.0, 1.0):
            t = (-b + sgn * sq) / (2.0 * a)
            y = oy + t * dy
            cands.append(np.where((y >= y0) & (y <= y1), t, np.inf))
        for yc in (y0, y1):
            t = (yc - oy) / dy
            x = ox + t * dx
            z = oz + t * dz
            cands.append(np.where(x * x + z * z <= radius * radius, t, np.inf))
    return _nearest_positive(*[np.nan_to_num(t, nan=np.inf) for t in cands])


def cylinder_normal(p, center_xz, radius: float, y0: float, y1: float) -> np.ndarray:
    """Outward unit normal of a capped cylinder: side or cap, whichever surface is nearest."""
    rx, rz = p[:, 0] - center_xz[0], p[:, 2] - center_xz[1]
    rr = np.sqrt(rx * rx + rz * rz)
    d_side = np.abs(rr - radius)
    d_top, d_bot = np.abs(p[:, 1] - y1), np.abs(p[:, 1] - y0)
    n = np.stack([rx, np.zeros_like(rx), rz], axis=-1) / np.maximum(rr, 1e-12)[:, None]
    top = (d_top < d_side) & (d_top <= d_bot)
    bot = (d_bot < d_side) & (d_bot < d_top)
    n[top] = (0.0, 1.0, 0.0)
    n[bot] = (0.0, -1.0, 0.0)
    return n


def hit_room(o, d, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Exit of rays starting inside the axis-aligned room [lo, hi].

    Returns ``t`` and the face index: 0/1 = x low/high (left/right wall), 2/3 = y low/high
    (floor/ceiling), 4/5 = z low/high (front/back wall).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, hi, lo)
        t = (bound - o) / d
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    axis = np.argmin(t, axis=-1)
    rows = np.arange(len(d))
    face = 2 * axis + (d[rows, axis] > 0)
    return t[rows, axis], face


# Inward unit normals of the room faces, indexed like hit_room's face.
ROOM_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                        dtype=np.float64)
