"""Concurrent infer + set_preference never mixes two preferences in one result, with engines
that take the weights per run (ONNX Runtime) and with engines that bind in place (TensorRT
style: refit, shared scratch), where runs must also never overlap loads, binds or closes."""

import threading
import time

import numpy as np
import pytest

from bundle_fixture import read_manifest
from inplace_fake import inplace_runtime
from dymu_rt.runtime import Runtime

X = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
N_RESULTS = 12 * 4                 # switches x (workers + 1): the least the loop collects


def _two_preferences(m):
    # Two preferences with different topologies, so a mix would be visible in every output.
    a = m["points"][0]
    b = next(p for p in m["points"] if p["topology"] != a["topology"])
    return a, b


def _switch_under_load(rt, a, b, workers=3, switches=12):
    """Workers infer continuously while this thread alternates a/b ``switches`` times; after
    each switch it waits for ``workers + 1`` new results, so at least one of them started
    after the switch (each worker has at most one run in flight): both preferences are
    then seen by construction, not by timing. Returns (matches per preference, errors,
    switches). No deadline: pytest-timeout guards a hang."""
    refs = []
    for p in (a, b):
        rt.set_preference(p["r"], p["c"])
        refs.append(rt.infer(X))
    results, errors, stop = [], [], threading.Event()

    def worker():
        try:
            while not stop.is_set():
                results.append(rt.infer(X))
        except Exception as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        for i in range(switches):
            p = (a, b)[i % 2]
            rt.set_preference(p["r"], p["c"])
            seen = len(results)
            while len(results) < seen + workers + 1 and not errors:
                time.sleep(0.0005)
            if errors:
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    counts = [0, 0]
    for n, out in enumerate(results):
        matches = [all(np.array_equal(out[k], ref[k]) for k in ref) for ref in refs]
        assert any(matches), f"result {n} equals neither preference's single-threaded output"
        counts[matches.index(True)] += 1
    return counts, errors, switches


def test_switching_under_concurrent_inference(bundle):
    a, b = _two_preferences(read_manifest(bundle))
    counts, errors, switches = _switch_under_load(Runtime.open(bundle), a, b)
    assert not errors, errors
    assert sum(counts) >= N_RESULTS and counts[0] > 0 and counts[1] > 0, counts
    assert switches >= 6


def test_switching_under_concurrent_inference_with_bind_in_place_engines(bundle):
    a, b = _two_preferences(read_manifest(bundle))
    rt, be = inplace_runtime(bundle, delay=0.0005)
    counts, errors, _ = _switch_under_load(rt, a, b)
    assert not errors, errors
    assert sum(counts) >= N_RESULTS and counts[0] > 0 and counts[1] > 0, counts
    assert be.violations == []


def test_bind_in_place_loads_and_evictions_never_overlap_runs(bundle):
    m = read_manifest(bundle)
    seen, pts = set(), []
    for p in m["points"]:
        if p["topology"] not in seen:
            seen.add(p["topology"])
            pts.append(p)
    assert len(pts) >= 3
    rt, be = inplace_runtime(bundle, delay=0.0005)
    rt.cache.budget_bytes = 1            # every switch to another topology loads and evicts
    rt.set_preference(pts[0]["r"], pts[0]["c"])
    errors, stop, switching, overlapped = [], threading.Event(), threading.Event(), []

    def worker():
        try:
            while not stop.is_set():
                during = switching.is_set()
                rt.infer(X)
                if during:
                    overlapped.append(1)        # this run was asked for while a switch was on
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    i = 0
    # At least 12 switches, and on until some run was requested during a switch (else this
    # test would pass without testing anything); pytest-timeout guards a hang.
    while (i < 12 or not overlapped) and not errors:
        p = pts[i % len(pts)]
        switching.set()
        rt.set_preference(p["r"], p["c"])
        switching.clear()
        i += 1
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert rt.cache.stats()["evictions"] >= 6
    assert overlapped, "no inference was requested while a switch was in progress"
    assert be.violations == []           # no run on a closed engine, no run during a load/close


@pytest.mark.parametrize("engine_kind", ["ort", "in-place"])
def test_profiling_never_evicts_the_current_engine(bundle, engine_kind):
    m = read_manifest(bundle)
    rt, be = (Runtime.open(bundle), None) if engine_kind == "ort" else inplace_runtime(bundle)
    a = m["points"][0]
    rt.set_preference(a["r"], a["c"])
    ref = rt.infer(X)
    rt.cache.budget_bytes = 1
    rt.profile_topologies(iters=1, warmup=0)
    assert a["topology"] in rt.cache.topologies()          # pinned: the current preference's engine
    out = rt.infer(X)
    assert all(np.array_equal(out[k], ref[k]) for k in ref)
    if be is not None:
        assert be.violations == []
