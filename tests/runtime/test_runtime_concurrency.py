"""Concurrent infer + set_preference never mixes two preferences in one result."""

import threading

import numpy as np

from bundle_fixture import read_manifest
from dymu_rt.runtime import Runtime

X = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)


def test_switching_under_concurrent_inference(bundle):
    m = read_manifest(bundle)
    # Two preferences with different topologies, so a mix would be visible in every output.
    a = m["points"][0]
    b = next(p for p in m["points"] if p["topology"] != a["topology"])
    rt = Runtime.open(bundle)
    refs = []
    for p in (a, b):
        rt.set_preference(p["r"], p["c"])
        refs.append(rt.infer(X))
    results, errors, stop = [], [], threading.Event()

    def worker():
        try:
            while not stop.is_set():
                results.append(rt.infer(X))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(40):
        p = (a, b)[i % 2]
        rt.set_preference(p["r"], p["c"])
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) > 0
    for out in results:
        matches = [all(np.array_equal(out[k], ref[k]) for k in ref) for ref in refs]
        assert any(matches), "an output equals neither preference's single-threaded output"
