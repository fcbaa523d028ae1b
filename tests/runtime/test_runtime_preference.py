"""set_preference: validation, exact binding equals the reference, nearest-grid fallback."""

import numpy as np
import pytest

from bundle_fixture import FixtureNet, read_manifest, tree_of, weight_deltas
from dymu_rt.core.errors import ValidationError
from dymu_rt.core.tree import topology_id
from dymu_rt.runtime import Runtime

X = np.random.default_rng(1).random((2, 3, 16, 16), dtype=np.float32)


@pytest.mark.parametrize("r, c, msg", [
    ("0.5,0.5", 0.5, "has 2 entries; expected N=3"),
    ("0.6,0.6,0.2", 0.5, "sums to 1.4"),
    ("-0.2,0.6,0.6", 0.5, "negative entry"),
    ("a,b,c", 0.5, "is not a number"),
    ("0.6,0.2,0.2", 1.5, "c = 1.5 is outside"),
    ("0.6,0.2,0.2", "nan", "outside"),
])
def test_bad_preferences_refused(bundle, r, c, msg):
    rt = Runtime.open(bundle)
    with pytest.raises(ValidationError, match=msg):
        rt.set_preference(r, c)


def test_infer_before_preference(bundle):
    with pytest.raises(ValidationError, match="no preference set"):
        Runtime.open(bundle).infer(X)


def test_bad_batch_shape(bundle):
    rt = Runtime.open(bundle)
    rt.set_preference("1,0,0", 0)
    with pytest.raises(ValidationError, match=r"expected a float32 batch \[B, 3, 16, 16\]"):
        rt.infer(np.zeros((1, 3, 8, 8), np.float32))


@pytest.mark.parametrize("binding", ["affine", "initializers", "session"])
def test_exact_binding_matches_reference(bundle, params, binding):
    """Off the exported point of its topology, the bound weights reproduce the torch
    reference with modulated (unfolded) BN: binding really swaps in that point's weights."""
    m = read_manifest(bundle)
    rt = Runtime.open(bundle, binding=binding)
    checked = 0
    for p in m["points"]:
        topo = m["topologies"][p["topology"]]
        if topo["exported_at"] == {"r": p["r"], "c": p["c"]}:
            continue                                    # want a point whose weights differ from the graph's
        info = rt.set_preference(p["r"], p["c"])
        assert info["binding"] == "exact" and info["topology"] == p["topology"]
        out = rt.infer(X)
        ref = FixtureNet(params)(X, tree_of(params, p["r"], p["c"]), weight_deltas(params, p["r"], p["c"]))
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-4)
        checked += 1
        if checked == 2:
            break
    assert checked == 2


def _off_grid(params, manifest, want_in_bundle: bool):
    rng = np.random.default_rng(3)
    for _ in range(2000):
        r, c = rng.dirichlet(np.ones(3)), float(rng.uniform())
        tid = topology_id(tree_of(params, r, c), manifest["topology_salt"])
        if (tid in manifest["topologies"]) == want_in_bundle:
            return [float(v) / float(np.sum(r)) for v in r], c
    pytest.fail("fixture has no such preference")


def test_off_grid_with_known_tree_is_exact(bundle, params):
    m = read_manifest(bundle)
    r, c = _off_grid(params, m, True)
    rt = Runtime.open(bundle)
    info = rt.set_preference(r, c)
    assert info["binding"] == "exact" and rt.stats()["grid_point"] is None
    ref = FixtureNet(params)(X, tree_of(params, r, c), weight_deltas(params, r, c))
    np.testing.assert_allclose(rt.infer(X)["depth"], ref["depth"], rtol=1e-4, atol=1e-4)


def test_unknown_tree_falls_back_to_nearest_grid_point(bundle, params):
    from dymu_rt.core.preference import Preference, nearest

    m = read_manifest(bundle)
    r, c = _off_grid(params, m, False)
    rt = Runtime.open(bundle)
    info = rt.set_preference(r, c)
    i = nearest(Preference(tuple(r), c), [Preference(tuple(p["r"]), p["c"]) for p in m["points"]])
    gp = m["points"][i]
    assert info["binding"] == "nearest-grid"
    assert info["grid_point"] == {"r": gp["r"], "c": gp["c"]} and info["topology"] == gp["topology"]
    s = rt.stats()
    assert s["binding"] == "nearest-grid" and s["topology"] == gp["topology"]
    ref = FixtureNet(params)(X, tree_of(params, gp["r"], gp["c"]), weight_deltas(params, gp["r"], gp["c"]))
    np.testing.assert_allclose(rt.infer(X)["semseg"], ref["semseg"], rtol=1e-4, atol=1e-4)


def test_stats_reports_cost_and_latency(bundle):
    m = read_manifest(bundle)
    rt = Runtime.open(bundle, second_tier="off")      # one engine load (no background folded build)
    rt.set_preference("1,0,0", 0)
    for _ in range(5):
        rt.infer(X)
    s = rt.stats()
    topo = m["topologies"][s["topology"]]
    assert (s["params"], s["macs"]) == (topo["params"], topo["macs"])
    # The bundle stores MACs; stats() names both units plainly.
    assert s["gmacs"] == pytest.approx(topo["macs"] / 1e9) and s["gflops"] == pytest.approx(2 * topo["macs"] / 1e9)
    lat = s["latency_ms"]
    assert lat["n"] == 5 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert s["cache"]["loads"] == 1


def test_normalize_option(bundle):
    rt = Runtime.open(bundle)
    rt.set_preference("2,1,1", 0.5, normalize=True)
    assert rt.stats()["r"] == [0.5, 0.25, 0.25]


def test_bind_in_place_engine_is_refitted_only_when_the_weights_change(bundle):
    from inplace_fake import inplace_runtime

    m = read_manifest(bundle)
    by_topo = {}
    for p in m["points"]:
        by_topo.setdefault(p["topology"], []).append(p)
    same = next(ps for ps in by_topo.values() if len(ps) >= 2)       # two points, one topology
    other = next(ps[0] for t, ps in by_topo.items() if t != same[0]["topology"])
    rt, be = inplace_runtime(bundle)
    p, q = same[0], same[1]
    rt.set_preference(p["r"], p["c"])
    first = rt.infer(X)
    for _ in range(4):
        assert all(np.array_equal(rt.infer(X)[k], first[k]) for k in first)
    eng = be.engines[p["topology"]][0]
    assert eng.binds == 1                                  # not once per inference
    rt.set_preference(other["r"], other["c"])
    rt.infer(X)
    rt.set_preference(p["r"], p["c"])                      # same weights as bound: no refit
    rt.infer(X)
    assert eng.binds == 1
    rt.set_preference(q["r"], q["c"])                      # same topology, other weights: refit
    out_q = rt.infer(X)
    rt.infer(X)
    assert eng.binds == 2 and len(be.engines[p["topology"]]) == 1
    assert not all(np.array_equal(out_q[k], first[k]) for k in first)
    assert be.violations == []
