"""Latency: a window of recent inference times, per-topology timing, and budget choice.

``dymu-rt profile`` times every topology of a bundle on this device (:func:`time_engine`)
and stores ``latency[profile][topology] = {p50_ms, p90_ms, p99_ms, batch, iters}`` in the
manifest. :func:`choose_for_budget` answers "which c, for this r, fits in B milliseconds":
the smallest c (least frugal, most accurate) whose topology's measured p50 fits, using only
rows timed at batch 1 (one image per inference, as ``dymu-rt run`` does).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

import numpy as np

from dymu_rt.bundle.manifest import Manifest
from dymu_rt.bundle.sections import latency_table
from dymu_rt.control.preference import parse_r
from dymu_rt.errors import ValidationError


def percentiles(ms) -> dict[str, float]:
    """p50/p90/p99 (ms) of a sequence of milliseconds."""
    a = np.asarray(list(ms), dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    p = np.percentile(a, [50, 90, 99])
    return {"p50_ms": float(p[0]), "p90_ms": float(p[1]), "p99_ms": float(p[2]), "n": int(a.size)}


class LatencyWindow:
    """The last ``size`` inference latencies (ms), thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._ms: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._ms.append(float(ms))

    def summary(self) -> dict[str, float]:
        with self._lock:
            return percentiles(self._ms)

    def clear(self) -> None:
        with self._lock:
            self._ms.clear()


def time_engine(run: Callable[[], Any], iters: int, warmup: int) -> dict[str, float]:
    """Warm up, then time ``iters`` calls of ``run`` (ms percentiles)."""
    for _ in range(warmup):
        run()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run()
        ms.append(1e3 * (time.perf_counter() - t0))
    return percentiles(ms)


def choose_for_budget(manifest: Manifest, profile: str, r, budget_ms, n_tasks: int,
                      normalize: bool = False) -> dict[str, Any]:
    """For task preference ``r`` (or the nearest grid r, L1 distance), the smallest grid c whose
    topology's measured p50 on ``profile`` is within ``budget_ms``.

    Returns {r (grid r used), r_snapped (bool), c, topology, p50_ms, budget_ms}.
    """
    try:
        budget = float(budget_ms)
    except (TypeError, ValueError):
        budget = float("nan")
    if not (math.isfinite(budget) and budget > 0):
        raise ValidationError(f"latency budget {budget_ms!r} ms is invalid; expected a number of milliseconds > 0")
    r = parse_r(r, n_tasks, normalize=normalize)
    table = latency_table(manifest, profile)
    if not table:
        raise ValidationError(f"the bundle has no latency table for profile '{profile}'; "
                              f"run `dymu-rt profile --profile {profile}` on this device first")
    grid_rs = sorted({p.r for p in manifest.points})
    dist = [sum(abs(a - b) for a, b in zip(g, r)) for g in grid_rs]
    r_grid = grid_rs[int(np.argmin(dist))]
    cands = sorted((p for p in manifest.points if p.r == r_grid), key=lambda p: p.c)
    # A single image is run at batch 1: rows timed at another batch say nothing about it.
    rows = {tid: row for tid, row in table.items() if int(row.get("batch", 1)) == 1}
    if not rows:
        batches = sorted({int(row.get("batch", 1)) for row in table.values()})
        raise ValidationError(f"the latency table for profile '{profile}' was measured at batch "
                              f"{','.join(map(str, batches))}, not 1; run `dymu-rt profile --profile {profile} "
                              "--batch 1` for a single-image latency budget")
    timed = [(p, rows[p.topology]["p50_ms"]) for p in cands if p.topology in rows]
    if not timed:
        raise ValidationError(f"latency table for profile '{profile}' lacks the topologies of r="
                              f"{','.join(f'{v:g}' for v in r_grid)}; rerun `dymu-rt profile --profile {profile}`")
    for p, ms in timed:
        if ms <= budget:
            return {"r": list(r_grid), "r_snapped": min(dist) > 1e-9, "c": p.c, "topology": p.topology,
                    "p50_ms": ms, "budget_ms": budget}
    fastest = min(timed, key=lambda t: t[1])
    raise ValidationError(f"no topology for r={','.join(f'{v:g}' for v in r_grid)} fits {budget:g} ms on "
                          f"'{profile}'; the fastest is {fastest[1]:.3g} ms (c={fastest[0].c:g})")


def profile_rows(manifest: Manifest, table: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a latency table joined with each topology's cost, fastest first: topology,
    n_points, gmacs, gflops, params, the table's columns and ``achieved_gflop_s`` (2 FLOPs
    per MAC x batch, at p50)."""
    counts: dict[str, int] = {}
    for p in manifest.points:
        counts[p.topology] = counts.get(p.topology, 0) + 1
    rows = []
    for tid, lat in sorted(table.items(), key=lambda kv: kv[1]["p50_ms"]):
        t = manifest.topologies[tid]
        batch = int(lat.get("batch", 1))
        rows.append({"topology": tid, "n_points": counts.get(tid, 0), "gmacs": t.gmacs, "gflops": t.gflops,
                     "params": t.params, **lat,
                     "achieved_gflop_s": t.gflops * batch / (lat["p50_ms"] * 1e-3)})
    return rows
