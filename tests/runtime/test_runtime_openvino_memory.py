"""The engine LRU charges an OpenVINO engine what it really holds (issue 23, second session):
its compiled model and infer request, measured, not its weights alone (which undercounted it
~3.5x at pascal3 and ~5x at synth-nyu). Each check runs in a fresh process on the shipped
synth-nyu bundle, so RSS starts clean. Cost: ~10 s on 2 cores (two subprocesses, ~9 compiles)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'dymu-rt[openvino]')")
from dymu_rt.core.heap import heap_bytes  # noqa: E402

needs_glibc = pytest.mark.skipif(heap_bytes() is None, reason="no glibc mallinfo2 here: engines fall back to "
                                                              "the weights-only estimate")

PROBE = r"""
import json, os, sys
import numpy as np
from dymu_rt.bundle.layout import default_bundle_path
from dymu_rt.runtime import Runtime

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

budget_mb, k = int(sys.argv[1]), int(sys.argv[2])
rt = Runtime.open(default_bundle_path(), profile="x86-64-cpu-openvino", second_tier="off")
rt.cache.budget_bytes = budget_mb * 2**20
m = rt.manifest
first = m.first_points()
x = np.random.default_rng(0).random((1, 3, *m.input_size), dtype=np.float32)
rows = []
for tid in sorted(m.topologies)[:k]:
    p = first[tid]
    rt.set_preference(p.r, p.c)
    rt.infer(x)
    eng = rt.cache.lookup(tid)
    rows.append({"rss": rss(), "counted": eng.memory_bytes(), "weights2": 2 * eng._bytes})
print(json.dumps({"rows": rows, "cached": len(rt.cache.topologies()), "cache_bytes": rt.cache.bytes()}))
rt.close()
"""


def _probe(budget_mb: int, k: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(budget_mb), str(k)], capture_output=True, text=True,
                         timeout=300, env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_counted_bytes_track_rss_growth_per_cached_engine():
    res = _probe(4096, 5)                   # a budget nothing is evicted under
    rows = res["rows"]
    assert res["cached"] == 5
    grown = rows[-1]["rss"] - rows[0]["rss"]          # engines 2..5 (the first also pays library start-up)
    counted = sum(r["counted"] for r in rows[1:])
    weights_only = sum(r["weights2"] for r in rows[1:])
    # measured: ~20 MB RSS per synth-nyu engine, 19 MB counted, 4 MB from the weights alone
    assert 0.6 <= counted / grown <= 1.6, (counted, grown)
    assert weights_only / grown < 0.5, "the fixture no longer tells the measured charge from the weights"


@needs_glibc
def test_budget_bounds_cached_openvino_engines():
    one = _probe(4096, 1)["rows"][0]["counted"]
    budget_mb = int(2.5 * one / 2**20) + 1            # room for two or three engines, not six
    res = _probe(budget_mb, 6)
    assert sum(r["weights2"] for r in res["rows"]) <= budget_mb * 2**20, "weights alone would fit all six"
    assert 2 <= res["cached"] < 6, res
    assert res["cache_bytes"] <= budget_mb * 2**20


def test_an_evicted_engine_is_freed_without_the_cyclic_gc():
    """A pooled infer request once held its Bound strongly, and the Bound its compiled model:
    a cycle that kept every evicted engine's compiled model and buffers alive until the cyclic
    GC ran (pascal3: RSS 1371 MB with 4 of 8 engines cached; 699 MB once it is broken)."""
    import gc
    import weakref

    import numpy as np

    from dymu_rt.bundle.layout import default_bundle_path
    from dymu_rt.runtime import Runtime

    rt = Runtime.open(default_bundle_path(), profile="x86-64-cpu-openvino", second_tier="off")
    m = rt.manifest
    first = m.first_points()
    x = np.random.default_rng(0).random((1, 3, *m.input_size), dtype=np.float32)
    a, b, c = sorted(m.topologies)[:3]
    gc.disable()
    try:
        rt.set_preference(first[a].r, first[a].c)
        rt.infer(x)
        ref = weakref.ref(rt.cache.lookup(a)._compiled)
        rt.cache.budget_bytes = 1                      # nothing but the current engine stays
        for t in (b, c):                               # loading c evicts a (b is current then)
            rt.set_preference(first[t].r, first[t].c)
            rt.infer(x)
        assert a not in rt.cache.topologies()
        assert ref() is None, "the evicted engine's compiled model is still alive"
    finally:
        gc.enable()
        rt.close()
