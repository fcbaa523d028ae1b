"""Two tiers per preference (docs/runtime-tiers.md): the instant tier serves a switch at once,
the folded engine is built (background / sync / off), swapped in atomically, cached, capped;
a stale build is discarded. ~6 s on 2 cores (tiny fixture bundle)."""

import threading
import time

import numpy as np
import pytest

from bundle_fixture import read_manifest
from dymu_rt.backends.devices import parse_profile
from dymu_rt.core.errors import ValidationError
from dymu_rt.runtime import Runtime

X = np.random.default_rng(5).random((1, 3, 16, 16), dtype=np.float32)


def _points(m, k=3):
    seen = {}
    for p in m["points"]:
        seen.setdefault(p["topology"], p)
    return list(seen.values())[:k]


def _close(a, b, tol=1e-4):
    return all(np.allclose(a[k], b[k], rtol=tol, atol=tol) for k in a)


def test_background_tier_swaps_in_the_folded_engine_of_the_same_preference(bundle):
    a = _points(read_manifest(bundle))[0]
    rt = Runtime.open(bundle)
    assert rt.second_tier == "background"
    rt.set_preference(a["r"], a["c"])
    first = rt.infer(X)                          # whatever tier served: the same preference
    assert rt.wait_folded(60) is True
    st = rt.stats()
    assert st["tier"] == "folded" and st["binding_mode"] == "folded"
    folded = rt.infer(X)
    off = Runtime.open(bundle, second_tier="off")
    off.set_preference(a["r"], a["c"])
    assert off.stats()["tier"] == "instant" and off.wait_folded(1) is False
    instant = off.infer(X)
    assert _close(folded, instant) and _close(first, instant)
    # the folded graph rounds differently: it really is another engine
    assert any(not np.array_equal(folded[k], instant[k]) for k in folded)
    assert rt.tier_log[-1]["swapped"] is True and rt.tier_log[-1]["after_switch_ms"] > 0


def test_sync_tier_returns_on_the_folded_engine_and_reuses_it(bundle):
    a, b = _points(read_manifest(bundle), 2)
    rt = Runtime.open(bundle, second_tier="sync")
    rt.cache.max_folded = 2                      # room for a's and b's (the default keeps 1)
    rt.set_preference(a["r"], a["c"])
    assert rt.stats()["tier"] == "folded"
    loads = rt.cache.stats()["loads"]
    rt.set_preference(b["r"], b["c"])
    rt.set_preference(a["r"], a["c"])            # a's folded engine is cached: no build
    assert rt.stats()["tier"] == "folded"
    assert rt.cache.stats()["loads"] == loads + 2          # b's instant + folded engines only


def test_folded_engines_are_capped_and_the_current_one_is_kept(bundle):
    pts = _points(read_manifest(bundle), 3)
    rt = Runtime.open(bundle, second_tier="sync")
    rt.cache.max_folded = 1
    for p in pts:
        rt.set_preference(p["r"], p["c"])
    folded = [k for k in rt.cache.topologies() if "@folded" in k]
    assert len(folded) == 1 and folded[0].startswith(pts[-1]["topology"])
    assert rt.stats()["tier"] == "folded"


def test_a_stale_build_is_discarded_and_the_newest_preference_wins(bundle, monkeypatch):
    a, b = _points(read_manifest(bundle), 2)
    rt = Runtime.open(bundle)
    real = rt.backend.load_folded
    gate = threading.Event()

    def slow(request, weights):
        gate.wait(30)                            # hold the first build until b is switched to
        return real(request, weights)

    monkeypatch.setattr(rt.backend, "load_folded", slow)
    rt.set_preference(a["r"], a["c"])
    time.sleep(0.05)                             # the worker has taken a's job
    rt.set_preference(b["r"], b["c"])
    gate.set()
    assert rt.wait_folded(60) is True
    st = rt.stats()
    assert st["topology"] == b["topology"] and st["tier"] == "folded"
    assert [e["swapped"] for e in rt.tier_log] == [False, True]       # a's build discarded
    assert not any(k.startswith(a["topology"] + "@folded") for k in rt.cache.topologies())


def test_a_failed_build_leaves_the_instant_tier_serving(bundle, monkeypatch):
    a = _points(read_manifest(bundle))[0]
    rt = Runtime.open(bundle)

    def boom(request, weights):
        raise RuntimeError("no memory for the folded engine")

    monkeypatch.setattr(rt.backend, "load_folded", boom)
    rt.set_preference(a["r"], a["c"])
    assert rt.wait_folded(30) is False
    st = rt.stats()
    assert st["tier"] == "instant" and "no memory" in st["second_tier_error"]
    assert rt.infer(X)


def test_timed_call_and_profile_time_the_steady_state(bundle):
    a = _points(read_manifest(bundle))[0]
    rt = Runtime.open(bundle)
    _, facts = rt.timed_call(X, topology=a["topology"])
    assert facts["tier"] == "folded" and facts["second_tier"] == "background"
    table = rt.profile_topologies(iters=1, warmup=0)
    assert all(row["tier"] == "folded" and row["folded_ms"] > 0 for row in table.values())
    off = Runtime.open(bundle, second_tier="off")
    _, facts = off.timed_call(X, topology=a["topology"])
    assert facts["tier"] == "instant"


def test_second_tier_mode_is_validated(bundle):
    with pytest.raises(ValidationError, match="second tier 'later'"):
        Runtime.open(bundle, second_tier="later")
    with pytest.raises(ValidationError, match="runtime.second_tier"):
        parse_profile({"name": "p", "backend": "onnxruntime", "runtime": {"second_tier": "eager"}})
    with pytest.raises(ValidationError, match="memory.folded_engines"):
        parse_profile({"name": "p", "backend": "onnxruntime", "memory": {"folded_engines": 0}})
    prof = parse_profile({"name": "p", "backend": "onnxruntime", "runtime": {"second_tier": "off"}})
    assert prof.second_tier == "off"


def test_session_binding_has_no_second_tier(bundle):
    rt = Runtime.open(bundle, binding="session")
    assert rt.second_tier == "off"
