"""Latency: a window of recent inference times, per-topology timing, and budget choice.

``dymu-rt profile`` times every topology of a bundle on this device (:func:`time_engine`)
and stores ``latency[profile][topology]`` in the manifest: ``count``, ``mean_ms``,
``std_ms``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``batch``, ``iters``, the switch costs
``load_ms`` (engine load: a switch to this topology when it is not cached) and ``bind_ms``
(hypernets + binding a preference: a switch when it is), what was measured with
(``threads``, ``versions`` of the libraries, ``timestamp``) and, for backends that time the
device themselves (TensorRT: CUDA events), ``gpu_compute_p50_ms`` etc. next to the host
latency. :func:`choose_for_budget` answers "which c, for this r, fits in B milliseconds":
the smallest c (least frugal, most accurate) whose topology's latency at the asked
percentile, plus the switch cost when it is not the current topology, fits; only rows
timed at batch 1 (one image per inference, as ``dymu-rt run`` does).
:func:`time_interleaved` times several calls in interleaved rounds (``dymu-rt compare``
times every method's row through it, on calls from :meth:`Runtime.timed_call`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from dymu_rt.bundle.manifest import Manifest, Point
from dymu_rt.bundle.sections import latency_table
from dymu_rt.core.preference import parse_r
from dymu_rt.core.selector import Selector
from dymu_rt.core.errors import ValidationError
from dymu_rt.bundle.latency_cache import library_versions


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


#: the percentiles a latency budget may be asked at
PERCENTILES = ("p50", "p90", "p99")


#: fewest timed runs for which a percentile is reported: the median needs a handful; the
#: 90th and 99th need at least 10 and 100 runs to rest on more than one sample's tail
MIN_RUNS = {"p50_ms": 5, "p90_ms": 10, "p99_ms": 100}


def reportable(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` (:func:`latency_stats`) with each percentile that too few runs back set to None
    (:data:`MIN_RUNS`): one run has no p90, three runs have no p99."""
    n = int(row.get("count", row.get("n", 0)) or 0)
    return {k: (None if k in MIN_RUNS and n < MIN_RUNS[k] else v) for k, v in row.items()}


def latency_stats(ms) -> dict[str, float]:
    """count, mean, std (sample), p50/p90/p99 of a sequence of milliseconds."""
    a = np.asarray(list(ms), dtype=np.float64)
    out = {"count": int(a.size), "mean_ms": float(a.mean()) if a.size else float("nan"),
           "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0}
    p = percentiles(a)
    out.update({k: p[k] for k in ("p50_ms", "p90_ms", "p99_ms")})
    return out


def measured_with(threads: int) -> dict[str, Any]:
    """What a latency row was measured with: thread count, library versions, UTC timestamp."""
    return {"threads": int(threads), "versions": library_versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def time_engine(run: Callable[[], Any], iters: int, warmup: int,
                device_ms: Callable[[], Optional[float]] = lambda: None) -> dict[str, float]:
    """Warm up, then time ``iters`` calls of ``run``: :func:`latency_stats` of the host time,
    plus ``gpu_compute_*`` stats when ``device_ms()`` reports the device time of each run
    (TensorRT's CUDA events: ``TensorRTEngine.last_timing``)."""
    return time_interleaved([run], rounds=1, iters=iters, warmup=warmup, device_ms=[device_ms])[0]


def time_interleaved(runs: Sequence[Callable[[], Any]], rounds: int, iters: int, warmup: int,
                     device_ms: Optional[Sequence[Callable[[], Optional[float]]]] = None,
                     on_round: Optional[Callable[[int], None]] = None) -> list[dict[str, float]]:
    """Time several calls alike (the one timing loop: :func:`time_engine` is its one-call case).

    Each call is warmed up ``warmup`` times; then, ``rounds`` times, every call in turn runs
    ``iters`` timed times, so that load from other processes during the measurement hits
    every call alike rather than whichever happened to run then. Returns, per call,
    :func:`latency_stats` over its ``rounds`` x ``iters`` host times (plus ``gpu_compute_*``
    when its ``device_ms()`` reports device times). ``on_round(i)`` after each round.
    """
    dev_fns = list(device_ms) if device_ms is not None else [lambda: None] * len(runs)
    for run in runs:
        for _ in range(warmup):
            run()
    ms: list[list[float]] = [[] for _ in runs]
    dev: list[list[float]] = [[] for _ in runs]
    for i in range(rounds):
        for k, run in enumerate(runs):
            for _ in range(iters):
                t0 = time.perf_counter()
                run()
                ms[k].append(1e3 * (time.perf_counter() - t0))
                d = dev_fns[k]()
                if d is not None:
                    dev[k].append(float(d))
        if on_round is not None:
            on_round(i)
    out = []
    for k in range(len(runs)):
        row = latency_stats(ms[k])
        if dev[k]:
            row.update({f"gpu_compute_{key}": v for key, v in latency_stats(dev[k]).items() if key != "count"})
        out.append(row)
    return out


def choose_for_budget(manifest: Manifest, profile: str, r, budget_ms, n_tasks: int,
                      normalize: bool = False, percentile: str = "p50", current: Optional[str] = None,
                      cached: Iterable[str] = (), frames: int = 1, profile_command: str = "") -> dict[str, Any]:
    """For task preference ``r`` (or the nearest grid r, L1 distance), the smallest grid c whose
    topology's measured latency at ``percentile`` (p50, p90 or p99) on ``profile``, plus the
    cost of switching to it, is within ``budget_ms``.

    The switch cost is 0 for the ``current`` topology, the row's ``bind_ms`` for a ``cached``
    one and its ``load_ms`` otherwise (rows profiled before switch costs were stored count 0),
    spread over the ``frames`` that will run at the chosen preference (a switch happens once).
    With no current topology (a process starting) there is no switch: every choice pays its
    first load alike, so it does not count.
    ``profile_command`` is the ``dymu-rt profile`` command that would fill a missing table
    (named in the error; default: ``dymu-rt profile --profile PROFILE``).
    Returns {r (grid r used), r_snapped (bool), c, topology, percentile, latency_ms, switch_ms,
    total_ms, p50_ms, budget_ms}.
    """
    if percentile not in PERCENTILES:
        raise ValidationError(f"--percentile {percentile!r}: expected one of {', '.join(PERCENTILES)}")
    cached = set(cached)
    try:
        budget = float(budget_ms)
    except (TypeError, ValueError):
        budget = float("nan")
    if not (math.isfinite(budget) and budget > 0):
        raise ValidationError(f"latency budget {budget_ms!r} ms is invalid; expected a number of milliseconds > 0")
    r = parse_r(r, n_tasks, normalize=normalize)
    table = latency_table(manifest, profile)
    if not table:
        how = profile_command or f"dymu-rt profile --profile {profile}"
        raise ValidationError(f"the bundle has no latency table for profile '{profile}'; "
                              f"run `{how}` on this device first")
    selector = Selector.from_manifest(manifest)
    r_grid, snapped = selector.nearest_r(r)
    cands = [Point(p.r, p.c, tid) for p, tid in selector.points_at(r_grid)]
    # A single image is run at batch 1: rows timed at another batch say nothing about it.
    rows = {tid: row for tid, row in table.items() if int(row.get("batch", 1)) == 1}
    if not rows:
        batches = sorted({int(row.get("batch", 1)) for row in table.values()})
        raise ValidationError(f"the latency table for profile '{profile}' was measured at batch "
                              f"{','.join(map(str, batches))}, not 1; run `dymu-rt profile --profile {profile} "
                              "--batch 1` for a single-image latency budget")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValidationError(f"frames {frames!r}: expected an integer >= 1")

    def switch_ms(tid: str) -> float:
        row = rows[tid]
        if current is None or tid == current:
            return 0.0
        return float(row.get("bind_ms", 0.0) if tid in cached else row.get("load_ms", 0.0)) / frames

    key = f"{percentile}_ms"
    timed = [(p, float(rows[p.topology].get(key, rows[p.topology]["p50_ms"])), switch_ms(p.topology))
             for p in cands if p.topology in rows]
    if not timed:
        raise ValidationError(f"latency table for profile '{profile}' lacks the topologies of r="
                              f"{','.join(f'{v:g}' for v in r_grid)}; rerun `dymu-rt profile --profile {profile}`")
    for p, ms, sw in timed:
        if ms + sw <= budget:
            return {"r": list(r_grid), "r_snapped": snapped, "c": p.c, "topology": p.topology,
                    "percentile": percentile, "latency_ms": ms, "switch_ms": sw, "total_ms": ms + sw,
                    "p50_ms": float(rows[p.topology]["p50_ms"]), "budget_ms": budget}
    fastest = min(timed, key=lambda t: t[1] + t[2])
    raise ValidationError(f"no topology for r={','.join(f'{v:g}' for v in r_grid)} fits {budget:g} ms at "
                          f"{percentile} on '{profile}'; the fastest is {fastest[1] + fastest[2]:.3g} ms "
                          f"({percentile} {fastest[1]:.3g} + switch {fastest[2]:.3g}, c={fastest[0].c:g})")


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
