"""Concurrent infer + set_preference on OpenVINO engines never mixes two preferences in one
result: infer requests are pooled per compiled model and each remembers the bound inputs it
holds (dymu_rt.backends.openvino.Compiled), so two preferences of ONE topology (same compiled
affine model, different BN inputs) are the hard case. Cost: ~3 s."""

import numpy as np
import pytest

from bundle_fixture import read_manifest
from test_runtime_concurrency import N_RESULTS, X, _switch_under_load
from dymu_rt.runtime import Runtime

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'dymu-rt[openvino]')")


def _same_topology_pair(m):
    by_topology: dict[str, list] = {}
    for p in m["points"]:
        by_topology.setdefault(p["topology"], []).append(p)
    a, b = max(by_topology.values(), key=len)[:2]
    return a, b


@pytest.mark.parametrize("binding", ["affine", "session"])
def test_switching_one_topology_under_concurrent_inference(bundle, binding):
    a, b = _same_topology_pair(read_manifest(bundle))
    refs = []
    for p in (a, b):         # single-threaded outputs per tier (instant, folded) on OpenVINO itself
        outs = []
        for tier in ("off", "sync"):
            ref = Runtime.open(bundle, profile="x86-64-cpu-openvino", binding=binding, second_tier=tier)
            ref.set_preference(p["r"], p["c"])
            outs.append(ref.infer(X))
            ref.close()
        refs.append(outs)
    rt = Runtime.open(bundle, profile="x86-64-cpu-openvino", binding=binding)
    counts, errors, switches, overlaps = _switch_under_load(rt, [a, b], refs, deadline_s=30.0)
    rt.close()
    assert not errors, errors
    assert sum(counts) >= N_RESULTS and counts[0] > 0 and counts[1] > 0, counts
    assert switches >= 6 and overlaps > 0
