"""`dymu-rt inspect`, `build` and `plot` through the CLI entry point (in process)."""

import json
import sys

import pytest

from cli_helpers import run_cli as _cli


def test_inspect_preset_json(capsys):
    code, out, _ = _cli(capsys, "inspect", "synth-nyu", "--json")
    assert code == 0
    d = json.loads(out)
    assert [t["name"] for t in d["tasks"]] == ["semseg", "normals", "depth"]
    assert d["layers"] == 9 and d["input_size"] == [64, 64]
    assert d["params"] > 0 and 0 < d["gmacs"] == pytest.approx(d["macs"] / 1e9) and d["gflops"] == pytest.approx(2 * d["macs"] / 1e9)
    assert "gmacs" in d["units"] and "2 x MACs" in d["units"]


def test_inspect_unknown_target_is_one_line_error(capsys, tmp_path):
    code, out, err = _cli(capsys, "inspect", str(tmp_path / "nothing-here"))
    assert code != 0 and "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "nothing-here" in lines[0] and "preset" in lines[0]


def test_build_inspect_plot(capsys, tiny_run, tmp_path):
    out = tmp_path / "bundle"
    code, stdout, err = _cli(capsys, "build", str(tiny_run), "--grid", "0.5", "--out", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["points"] == 18 and summary["topologies"] >= 1

    code, stdout, _ = _cli(capsys, "inspect", str(out), "--json", "--verify")
    assert code == 0
    d = json.loads(stdout)
    assert d["what"] == "bundle" and d["verified"] and d["points"] == 18
    counts = [t["n_points"] for t in d["topologies"]]
    assert counts == sorted(counts, reverse=True) and sum(counts) == 18

    code, stdout, _ = _cli(capsys, "inspect", str(tiny_run), "--json")
    assert code == 0 and json.loads(stdout)["stages"]["weight"]["done"]

    png = tmp_path / "map.png"
    code, _, err = _cli(capsys, "plot", str(out), "--out", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_bad_grid_and_tensorrt_are_one_line_errors(capsys, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)       # no TensorRT, on any machine
    code, _, err = _cli(capsys, "build", str(tiny_run), "--grid", "0.3", "--out", str(tmp_path / "b"))
    assert code != 0 and "0.3" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    code, _, err = _cli(capsys, "build", str(tiny_run), "--backend", "tensorrt", "--out", str(tmp_path / "t"))
    assert code != 0 and "TensorRT" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()
