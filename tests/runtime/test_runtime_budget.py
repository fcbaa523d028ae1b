"""Latency table (dymu-rt profile) and the latency-budget choice of c."""

import json

import pytest

from dymu_rt.bundle.checksum import write_checksum

from bundle_fixture import read_manifest
from dymu_rt.core.errors import ValidationError
from dymu_rt.runtime import Runtime


def _fake_table(m, ms_of_topology):
    return {tid: {"p50_ms": ms_of_topology(tid), "p90_ms": 0, "p99_ms": 0, "batch": 1} for tid in m["topologies"]}


def test_profile_stores_table_atomically(bundle):
    rt = Runtime.open(bundle)
    table = rt.profile_topologies(iters=3, warmup=1)
    m = read_manifest(bundle)
    assert set(m["latency"]["x86-64-cpu"]) == set(m["topologies"]) == set(table)
    assert all(row["p50_ms"] > 0 and row["iters"] == 3 for row in table.values())
    assert not list(bundle.glob(".*.tmp"))
    Runtime.open(bundle)                                      # still a valid bundle


def test_no_table_refused(bundle):
    rt = Runtime.open(bundle)
    with pytest.raises(ValidationError, match="no latency table for profile 'x86-64-cpu'.*dymu-rt profile"):
        rt.choose_for_budget("1,0,0", 5)


def test_budget_picks_smallest_fitting_c(bundle):
    m = read_manifest(bundle)
    r = [1.0, 0.0, 0.0]
    row = sorted((p for p in m["points"] if p["r"] == r), key=lambda p: p["c"])
    # Latency falling with c: c=0 -> 3 ms, c=0.5 -> 2 ms, c=1 -> 1 ms (per its topology).
    ms = {}
    for i, p in enumerate(row):
        ms.setdefault(p["topology"], 3.0 - i)
    m["latency"] = {"x86-64-cpu": _fake_table(m, lambda t: ms.get(t, 99.0))}
    (bundle / "manifest.json").write_text(json.dumps(m))
    write_checksum(bundle)              # bundles carry a checksum (an unverified one is refused)
    rt = Runtime.open(bundle)
    want = next(p for p in row if ms[p["topology"]] <= 2.5)
    got = rt.choose_for_budget(r, 2.5)
    assert got["c"] == want["c"] and got["topology"] == want["topology"] and not got["r_snapped"]
    assert rt.choose_for_budget(r, 100)["c"] == row[0]["c"]  # everything fits: least frugal
    # An off-grid r snaps to the nearest grid r.
    snapped = rt.choose_for_budget([0.9, 0.05, 0.05], 100)
    assert snapped["r"] == r and snapped["r_snapped"]
    with pytest.raises(ValidationError, match="no topology for r=1,0,0 fits 0.5 ms"):
        rt.choose_for_budget(r, 0.5)


@pytest.mark.parametrize("budget", [0, -1, float("nan"), "x"])
def test_bad_budget(bundle, budget):
    with pytest.raises(ValidationError, match="latency budget"):
        Runtime.open(bundle).choose_for_budget("1,0,0", budget)


def test_bad_profile_args(bundle):
    with pytest.raises(ValidationError, match="--iters = 0"):
        Runtime.open(bundle).profile_topologies(iters=0)


def test_budget_uses_batch_1_rows_only(bundle):
    m = read_manifest(bundle)
    r = [1.0, 0.0, 0.0]
    row = sorted((p for p in m["points"] if p["r"] == r), key=lambda p: p["c"])
    # Timed at batch 8 only: no single-image latency is known -> one clear refusal.
    table = _fake_table(m, lambda t: 1.0)
    for v in table.values():
        v["batch"] = 8
    m["latency"] = {"x86-64-cpu": table}
    (bundle / "manifest.json").write_text(json.dumps(m))
    write_checksum(bundle)              # bundles carry a checksum (an unverified one is refused)
    with pytest.raises(ValidationError) as e:
        Runtime.open(bundle).choose_for_budget(r, 100)
    assert "\n" not in str(e.value)
    assert "measured at batch 8, not 1; run `dymu-rt profile --profile x86-64-cpu --batch 1`" in str(e.value)
    # Mixed: the fast batch-8 row of the least frugal topology is ignored, batch-1 rows decide.
    first = row[0]["topology"]
    for tid, v in table.items():
        v["batch"] = 8 if tid == first else 1
        v["p50_ms"] = 0.1 if tid == first else 1.0
    m["latency"] = {"x86-64-cpu": table}
    (bundle / "manifest.json").write_text(json.dumps(m))
    write_checksum(bundle)              # bundles carry a checksum (an unverified one is refused)
    got = Runtime.open(bundle).choose_for_budget(r, 100)
    assert got["topology"] != first and got["p50_ms"] == 1.0


def test_profile_records_the_batch_it_timed(bundle):
    rt = Runtime.open(bundle)
    table = rt.profile_topologies(iters=2, warmup=0, batch=2)
    assert {row["batch"] for row in table.values()} == {2}
    with pytest.raises(ValidationError, match="measured at batch 2, not 1"):
        rt.choose_for_budget("1,0,0", 100)


def test_profile_rows_record_stats_switch_costs_and_context(bundle):
    table = Runtime.open(bundle).profile_topologies(iters=4, warmup=1)
    for row in table.values():
        assert row["count"] == 4 and row["mean_ms"] > 0 and row["std_ms"] >= 0
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["load_ms"] > 0 and row["bind_ms"] > 0                     # the switch costs
        assert row["threads"] >= 1 and "onnxruntime" in row["versions"] and row["timestamp"].endswith("Z")
        assert "gpu_compute_p50_ms" not in row                               # ORT: host time only


def test_budget_by_percentile_and_switch_cost(bundle):
    from dymu_rt.bundle.manifest import Manifest
    from dymu_rt.runtime.latency import choose_for_budget

    m = read_manifest(bundle)
    r = [1.0, 0.0, 0.0]
    row = sorted((p for p in m["points"] if p["r"] == r), key=lambda p: p["c"])
    tops = list(dict.fromkeys(p["topology"] for p in row))
    assert len(tops) >= 2, "fixture needs two topologies along c"
    first, second = tops[0], tops[1]
    table = {tid: {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "batch": 1, "load_ms": 50.0, "bind_ms": 0.5}
             for tid in m["topologies"]}
    table[first].update(p50_ms=2.0, p90_ms=9.0, p99_ms=9.0)          # least frugal: slow tail
    m["latency"] = {"x86-64-cpu": table}
    man = Manifest.from_dict(m)
    assert choose_for_budget(man, "x86-64-cpu", r, 3, 3, current=first)["topology"] == first
    by_p90 = choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p90", current=second)
    assert by_p90["topology"] == second and by_p90["switch_ms"] == 0.0
    # not current, not cached: the load counts, so nothing fits 3 ms ...
    with pytest.raises(ValidationError, match="fits 3 ms at p90.*switch"):
        choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p90", current=first)
    # ... unless it is spread over enough frames (a switch happens once) ...
    assert choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p90", current=first,
                             frames=100)["switch_ms"] == 0.5
    # ... and a starting process (no current topology) pays every first load alike: no switch
    assert choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p90")["switch_ms"] == 0.0
    # ... cached: only the bind counts
    cached = choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p90", current=first, cached=[second])
    assert cached["switch_ms"] == 0.5 and cached["total_ms"] == 1.5
    with pytest.raises(ValidationError, match="--percentile 'p95'"):
        choose_for_budget(man, "x86-64-cpu", r, 3, 3, percentile="p95")
