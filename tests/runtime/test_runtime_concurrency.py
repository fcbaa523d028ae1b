"""Concurrent infer + set_preference never mixes two preferences in one result, with engines
that take the weights per run (ONNX Runtime) and with engines that bind in place (TensorRT
style: refit, shared scratch), where runs must also never overlap loads, binds or closes."""

import hashlib
import threading
import time

import numpy as np
import pytest

from bundle_fixture import read_manifest
from inplace_fake import inplace_runtime
from dymu_rt.runtime import Runtime

X = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
N_RESULTS = 60


def _two_preferences(m):
    # Two preferences with different topologies, so a mix would be visible in every output.
    a = m["points"][0]
    b = next(p for p in m["points"] if p["topology"] != a["topology"])
    return a, b


def _references(bundle, prefs, tiers=("off", "sync")):
    """Single-threaded outputs of each preference, per tier: a result is right if it equals
    one tier's output of one preference bitwise (the folded graph rounds differently from the
    instant one; a mix of two preferences equals neither)."""
    refs = []
    for p in prefs:
        outs = []
        for tier in tiers:
            rt = Runtime.open(bundle, second_tier=tier)
            rt.set_preference(p["r"], p["c"])
            outs.append(rt.infer(X))
            rt.close()
        refs.append(outs)
    return refs


def _digest(out) -> bytes:
    return hashlib.sha1(b"".join(np.ascontiguousarray(out[k]).tobytes() for k in sorted(out))).digest()


def _which(out, refs):
    """Index of the preference whose reference (any tier) ``out`` equals bitwise, else None."""
    d = _digest(out)
    for i, outs in enumerate(refs):
        if any(_digest(ref) == d for ref in outs):
            return i
    return None


def _switch_under_load(rt, prefs, refs, workers=3, deadline_s=60.0, min_switches=6, min_results=N_RESULTS):
    """Workers infer continuously while this thread cycles through ``prefs`` until
    ``min_results`` results arrived, ``min_switches`` switches were made *and* every preference
    was seen; returns (matches per preference, errors, switches, overlaps): ``overlaps`` counts
    inferences that ran while a set_preference call was in progress."""
    results, spans, switch_spans, errors, stop = [], [], [], [], threading.Event()
    rt.set_preference(prefs[-1]["r"], prefs[-1]["c"])

    def worker():
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                out = rt.infer(X)
                spans.append((t0, time.perf_counter()))
                results.append(out)
        except Exception as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    counts, checked, i, t_end = [0] * len(prefs), 0, 0, time.monotonic() + deadline_s
    try:
        while time.monotonic() < t_end and not errors:
            p = prefs[i % len(prefs)]
            i += 1
            t0 = time.perf_counter()
            rt.set_preference(p["r"], p["c"])
            switch_spans.append((t0, time.perf_counter()))
            upto = min(len(results), checked + 16)      # bounded: the switching must go on
            while checked < upto:
                out = results[checked]
                checked += 1
                k = _which(out, refs)
                assert k is not None, f"result {checked} equals no preference's single-threaded output"
                counts[k] += 1
            if checked >= min_results and min(counts) > 0 and i >= min_switches:
                break
            time.sleep(0.0005)
    finally:
        stop.set()
        for t in threads:
            t.join()
    for out in results[checked:]:
        assert _which(out, refs) is not None
    overlaps = sum(1 for a, b in spans if any(s < b and a < e for s, e in switch_spans))
    return counts, errors, i, overlaps


def test_switching_under_concurrent_inference(bundle):
    a, b = _two_preferences(read_manifest(bundle))
    counts, errors, switches, overlaps = _switch_under_load(Runtime.open(bundle), [a, b],
                                                            _references(bundle, [a, b]))
    assert not errors, errors
    assert sum(counts) >= N_RESULTS and counts[0] > 0 and counts[1] > 0, counts
    assert switches >= 6


def _many_preferences(m, k=4):
    seen, out = set(), []
    for p in m["points"]:
        if p["topology"] not in seen:
            seen.add(p["topology"])
            out.append(p)
    return out[:k]


def _four_threads_while_switching(bundle, n_switches):
    """4 threads infer while the main thread switches ``n_switches`` times between preferences
    of different topologies (the background second tier building and being cancelled)."""
    prefs = _many_preferences(read_manifest(bundle))
    refs = _references(bundle, prefs)
    rt = Runtime.open(bundle)
    assert rt.second_tier == "background"
    done = threading.Event()
    result = {}

    def run():
        try:
            result["v"] = _switch_under_load(rt, prefs, refs, workers=4, deadline_s=300.0,
                                             min_switches=n_switches, min_results=0)
        except BaseException as e:      # re-raised by the test thread
            result["error"] = e
        finally:
            done.set()

    main = threading.Thread(target=run, daemon=True)
    main.start()
    assert done.wait(600.0), "deadlock: switching under 4 inferring threads did not finish"
    if "error" in result:
        raise result["error"]
    counts, errors, switches, overlaps = result["v"]
    assert not errors, errors
    assert switches >= n_switches and min(counts) > 0, (switches, counts)
    assert overlaps > 0, "no inference overlapped a switch: the test exercised nothing concurrent"
    rt.close()
    return counts, switches, overlaps


def test_four_threads_infer_while_switching(bundle):
    """Default suite: 100 switches (~5 s on 2 cores)."""
    _four_threads_while_switching(bundle, 100)


@pytest.mark.slow
def test_four_threads_infer_while_switching_1000_times(bundle):
    """The issue's count: 1,000 switches (~30-60 s)."""
    _four_threads_while_switching(bundle, 1000)


def test_switching_under_concurrent_inference_with_bind_in_place_engines(bundle):
    a, b = _two_preferences(read_manifest(bundle))
    rt, be = inplace_runtime(bundle, delay=0.0005)
    refs = []
    for p in (a, b):
        rt.set_preference(p["r"], p["c"])
        refs.append([rt.infer(X)])
    counts, errors, _, _ = _switch_under_load(rt, [a, b], refs)
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
    errors, stop = [], threading.Event()

    def worker():
        try:
            while not stop.is_set():
                rt.infer(X)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(12):
        p = pts[i % len(pts)]
        rt.set_preference(p["r"], p["c"])
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert rt.cache.stats()["evictions"] >= 6
    assert be.violations == []           # no run on a closed engine, no run during a load/close


@pytest.mark.parametrize("engine_kind", ["ort", "in-place"])
def test_profiling_never_evicts_the_current_engine(bundle, engine_kind):
    m = read_manifest(bundle)
    rt, be = (Runtime.open(bundle), None) if engine_kind == "ort" else inplace_runtime(bundle)
    a = m["points"][0]
    rt.set_preference(a["r"], a["c"])
    rt.wait_folded(60)                                      # the steady state (ORT: the folded engine)
    ref = rt.infer(X)
    rt.cache.budget_bytes = 1
    rt.profile_topologies(iters=1, warmup=0)
    assert a["topology"] in rt.cache.topologies()          # pinned: the current preference's engine
    out = rt.infer(X)
    assert all(np.array_equal(out[k], ref[k]) for k in ref)
    if be is not None:
        assert be.violations == []
