"""`dymu-rt check`: every backend/precision against the FP32 reference; exit 1 on a violation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import run_cli
from dymu_rt.app.check import _compare, sample_points
from dymu_rt.bundle.manifest import Point
from dymu_rt.runtime import default_bundle_path


def test_check_passes_on_the_shipped_bundle_and_reports_json(capsys):
    code, out, err = run_cli(capsys, "check", str(default_bundle_path()), "--points", "2", "--scenes", "2",
                             "--threads", "1", "--json")
    assert code == 0, err
    rep = json.loads(out)
    # 2 points x 1 contender (fp32) in both tiers (the folded engine and the instant tier)
    assert rep["passed"] and len(rep["results"]) == 4
    assert {r["contender"] for r in rep["results"]} == {"ort fp32", "ort fp32 instant tier"}
    res = rep["results"][0]
    assert {o["task"] for o in res["outputs"]} == {"semseg", "normals", "depth"}
    assert all(o["max_abs"] < 1e-3 for r in rep["results"] for o in r["outputs"])
    assert set(res["metrics"]["semseg"]) >= {"metric", "reference", "value", "change", "passed"}
    assert "ort int8" in rep["skipped"]                                      # not calibrated: said, not failed


def test_check_exits_1_on_a_violation(capsys):
    # FP32 affine vs FP32 folded differ by summation order (~1e-6): zero tolerance must fail.
    code, out, _ = run_cli(capsys, "check", str(default_bundle_path()), "--points", "1", "--scenes", "1",
                           "--threads", "1", "--atol", "0", "--rtol", "0")
    assert code == 1 and "FAILED" in out


@pytest.mark.parametrize("args, expect", [(["--atol", "-1"], "--atol -1.0: expected a number >= 0"),
                                          (["--points", "0"], "--points 0: expected"),
                                          (["--scenes", "0"], "--scenes 0: expected")])
def test_check_bad_values_are_one_line(capsys, args, expect):
    code, out, err = run_cli(capsys, "check", str(default_bundle_path()), "--threads", "1", *args)
    assert code == 2 and err.startswith("error: ") and expect in err and "Traceback" not in err


def test_compare_matches_the_elementwise_rule_with_and_without_polygraphy(monkeypatch):
    ref = {"y": np.array([1.0, 2.0, 0.0], np.float32)}
    got = {"y": np.array([1.05, 2.0, 0.01], np.float32)}
    res, _ = _compare(ref, got, atol=0.02, rtol=0.1)          # 1.05: rel 0.05 ok; 0.01: abs ok
    assert res["y"][2] is True and res["y"][0] == pytest.approx(0.05, abs=1e-6)
    res, _ = _compare(ref, got, atol=0.001, rtol=0.01)
    assert res["y"][2] is False
    import sys

    monkeypatch.setitem(sys.modules, "polygraphy", None)       # the optional dependency absent
    monkeypatch.setitem(sys.modules, "polygraphy.comparator", None)
    res2, name = _compare(ref, got, atol=0.02, rtol=0.1)
    assert name == "numpy" and res2["y"][2] is True


def test_sample_points_cover_topologies_first():
    points = [Point((1.0, 0.0), c, t) for t, c in (("a", 0), ("a", 1), ("a", 0.5), ("b", 1))]
    pts = sample_points(points, 2)
    assert {p.topology for p in pts} == {"a", "b"}
    assert len(sample_points(points, 10)) == 4


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("comparator", ["polygraphy", "numpy"])
def test_default_tolerances_reject_an_all_zero_or_sign_flipped_output(precision, comparator, monkeypatch):
    """The element-wise bounds must catch gross breakage (issue 28): an output of zeros, or
    of the reference with its sign flipped, fails; a realistic quantization error passes
    (INT8 of the shipped bundle: max abs error 0.29 on logits of a few units). Both
    comparators: with rtol 1 the numpy rule (|a-b|/|b|) passed an all-zero output."""
    import sys

    from dymu_rt.app.check import DEFAULT_TOLERANCE

    if comparator == "numpy":
        monkeypatch.setitem(sys.modules, "polygraphy", None)
        monkeypatch.setitem(sys.modules, "polygraphy.comparator", None)
    else:
        pytest.importorskip("polygraphy", reason="the optional polygraphy comparator is not installed")
    atol, rtol = DEFAULT_TOLERANCE[precision]
    rng = np.random.default_rng(0)
    ref = {"y": (rng.standard_normal(1000) * 4).astype(np.float32)}
    res, used = _compare(ref, {"y": np.zeros(1000, np.float32)}, atol, rtol)
    assert used == comparator and not res["y"][2]
    assert not _compare(ref, {"y": -ref["y"]}, atol, rtol)[0]["y"][2]
    noisy = ref["y"] + rng.uniform(-0.3, 0.3, 1000).astype(np.float32) * (0.3 if precision == "fp16" else 1)
    assert _compare(ref, {"y": noisy}, atol, rtol)[0]["y"][2]


def test_an_engine_failing_while_it_runs_is_one_error_line(capsys, monkeypatch):
    """An exception raised inside an engine (here: ONNX Runtime's, faked on the first contender
    after the reference) ends `check` with one `error:` line naming the contender, the
    preference and the engine's first line -- no traceback, exit != 0."""
    from dymu_rt.runtime.runtime import Runtime

    real, calls = Runtime.infer, []

    def infer(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:             # call 1 is the FP32 reference; call 2 the first contender
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Shape mismatch attempting to "
                               "re-use buffer\nsecond line the user need not see")
        return real(self, *a, **kw)

    monkeypatch.setattr(Runtime, "infer", infer)
    code, out, err = run_cli(capsys, "check", str(default_bundle_path()), "--points", "1", "--scenes", "1",
                             "--threads", "1")
    assert code not in (0, None) and len(calls) == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: check: ort fp32 at r="), err
    assert "RuntimeError: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Shape mismatch" in lines[0]
    assert "Traceback" not in err + out and "second line" not in err
