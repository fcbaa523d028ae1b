"""The CLI on OpenVINO profiles: `profile` then `run --latency-budget` on the fixture bundle,
`check` against ONNX Runtime FP32 on the shipped bundle, `compare --profile` on a tiny run.

Cost: ~40 s on the shared 2-core machine (compare: 28 s, as much as
tests/methods/test_compare_latency.py's compare test; profile + run: 4 s; check: 2 x 3 s)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle_fixture import read_manifest
from cli_helpers import run_cli

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'dymu-rt[openvino]')")
from dymu_rt.backends.openvino import bf16_support  # noqa: E402

PROFILE = "x86-64-cpu-openvino"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "one.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).save(path)
    return path


def test_profile_then_budget_run_on_openvino(capsys, bundle, image, tmp_path):
    code, out, err = run_cli(capsys, "profile", "--bundle", str(bundle), "--profile", PROFILE, "--iters", "3",
                             "--warmup", "1", "--json")
    assert code == 0, err
    res = json.loads(out)
    m = read_manifest(bundle)
    assert res["backend"] == "openvino" and res["profile"] == PROFILE
    assert len(res["topologies"]) == len(m["topologies"]) == len(m["latency"][PROFILE])   # its own table
    assert "x86-64-cpu" not in m["latency"]
    assert all(row["p50_ms"] > 0 for row in res["topologies"])
    code, out, err = run_cli(capsys, "run", "--r", "1,0,0", "--latency-budget", "1000", str(image), "--bundle",
                             str(bundle), "--profile", PROFILE, "--out", str(tmp_path / "o"), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["budget_choice"]["c"] == 0.0 and s["backend"] == "openvino"
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png"))
    # a budget nothing fits: one line, nothing written
    code, _, err = run_cli(capsys, "run", "--r", "1,0,0", "--latency-budget", "0.000001", str(image), "--bundle",
                           str(bundle), "--profile", PROFILE, "--out", str(tmp_path / "o2"))
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("profile", [PROFILE, "x86-64-cpu-openvino-bf16"])
def test_check_compares_openvino_with_ort_fp32(capsys, profile):
    from dymu_rt.runtime import default_bundle_path

    if profile.endswith("bf16") and not bf16_support()[0]:
        pytest.skip("this CPU has no native BF16 (AVX512_BF16 / AMX)")
    code, out, err = run_cli(capsys, "check", str(default_bundle_path()), "--profile", profile, "--points", "1",
                             "--scenes", "2", "--threads", "1", "--json")
    assert code == 0, err
    rep = json.loads(out)
    mine = [r for r in rep["results"] if r["contender"] == f"profile {profile}"]
    assert rep["passed"] and len(mine) == 1 and f"profile {profile}" not in rep["skipped"]
    outs = {o["task"]: o for o in mine[0]["outputs"]}
    assert set(outs) == {"semseg", "normals", "depth"} and set(mine[0]["metrics"]) == set(outs)
    if profile == PROFILE:
        assert all(o["max_abs"] < 1e-3 for o in outs.values())
    else:                           # bf16: not equal (it ran in bf16), within check's bf16 tolerance
        assert any(o["max_abs"] > 1e-4 for o in outs.values()) and mine[0]["atol"] == 0.25


def test_compare_times_rows_on_openvino(capsys, tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))
    from run_fixture import make_tiny_run

    run = make_tiny_run(tmp_path / "dymu")
    code, out, err = run_cli(capsys, "compare", str(run), "--profile", PROFILE, "--n-val", "2", "--rounds", "1",
                             "--iters", "2", "--threads", "1", "--out", str(tmp_path / "cmp"), "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["latency_protocol"]["profile"] == PROFILE and rep["latency_protocol"]["backend"] == "openvino"
    rows = {r["label"]: r for r in rep["rows"]}
    assert {"single-task", "DYMU c=0 (uniform r)", "DYMU c=1 (uniform r)"} <= set(rows)
    for r in rows.values():
        assert r["timed"]["backend"] == "openvino" and r["timed"]["profile"] == PROFILE
        assert r["timed"]["threads"] == 1 and r["latency_ms"]["p50"] > 0
    # the steady state: the preference's folded OpenVINO engine (the second tier)
    assert rows["DYMU c=0 (uniform r)"]["timed"]["binding_mode"] == "folded"
    assert rows["DYMU c=0 (uniform r)"]["binding"] == "folded"
    assert (tmp_path / "cmp" / "compare.png").is_file()
