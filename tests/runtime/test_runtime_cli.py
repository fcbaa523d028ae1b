"""dymu-rt run / profile / profiles end to end on the fixture bundle."""

import json

import numpy as np
import pytest
from PIL import Image

from bundle_fixture import read_manifest
from cli_helpers import run_cli as _cli


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).save(d / "one.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8), "L").save(d / "two.jpg")
    return d


def test_run_json_writes_pngs(capsys, bundle, images, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "run", "--r", "0.6,0.2,0.2", "--c", "0.5", str(images / "one.png"),
                             "--bundle", str(bundle), "--out", str(out), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert {"topology", "gflops", "gmacs", "params", "latency_ms", "outputs"} <= set(res)
    # Unambiguous units: gmacs = multiply-adds / 1e9, gflops = 2 x MACs / 1e9.
    assert res["gmacs"] == pytest.approx(res["macs"] / 1e9) and res["gflops"] == pytest.approx(2 * res["gmacs"])
    assert res["backend"] == "onnxruntime"
    assert set(res["outputs"]) == {"semseg", "normals", "depth", "overview"}
    for f in res["outputs"].values():
        assert Image.open(f).mode == "RGB"


def test_run_folder_several_images(capsys, bundle, images, tmp_path):
    code, stdout, err = _cli(capsys, "run", "--r", "1,0,0", "--c", "0", str(images), "--bundle", str(bundle),
                             "--out", str(tmp_path / "o"), "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert len(res["images"]) == 2 and isinstance(res["outputs"], list) and len(res["outputs"]) == 2
    # Timing is of the first image, after warm-up: the default gives every percentile.
    lat = res["latency_ms"]
    assert lat["count"] == 100 and lat["warmup"] == 10 and lat["cold_ms"] > 0
    assert all(lat[k] is not None and lat[k] > 0 for k in ("p50_ms", "p90_ms", "p99_ms"))


def test_run_table(capsys, bundle, images, tmp_path):
    code, stdout, err = _cli(capsys, "run", "--r", "0.6,0.2,0.2", "--c", "0.5", str(images),
                             "--bundle", str(bundle), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "topology" in stdout and "GFLOPs" in stdout and "latency" in stdout


@pytest.mark.parametrize("args, msg", [
    (["--r", "0.6,0.6,0.2", "--c", "0.5"], "sums to 1.4"),
    (["--r", "0.6,0.2,0.2", "--c", "2"], "c = 2 is outside"),
    (["--r", "0.6,0.2,0.2"], "exactly one of --c"),
    (["--r", "1,0,0", "--latency-budget", "5"], "no latency table"),
    (["--r", "1,0,0", "--latency-budget", "5"], "run `dymu-rt profile --bundle "),     # names this bundle
])
def test_run_user_errors_one_line(capsys, bundle, images, tmp_path, args, msg):
    code, _, err = _cli(capsys, "run", *args, str(images), "--bundle", str(bundle), "--out", str(tmp_path / "o"))
    assert code != 0 and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_run_non_image_one_line(capsys, bundle, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("hello")
    code, _, err = _cli(capsys, "run", "--r", "1,0,0", "--c", "0", str(bad), "--bundle", str(bundle),
                        "--out", str(tmp_path / "o"))
    assert code != 0 and "x.png is not an image" in err and len(err.strip().splitlines()) == 1


def test_profile_then_budget_run(capsys, bundle, images, tmp_path):
    code, stdout, err = _cli(capsys, "profile", "--bundle", str(bundle), "--iters", "3", "--warmup", "1", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    m = read_manifest(bundle)
    assert len(res["topologies"]) == len(m["topologies"]) == len(m["latency"]["x86-64-cpu"])
    p50s = [row["p50_ms"] for row in res["topologies"]]
    assert p50s == sorted(p50s)
    for row in res["topologies"]:                           # same units as `run --json`
        macs = m["topologies"][row["topology"]]["macs"]
        assert row["gmacs"] == pytest.approx(macs / 1e9) and row["gflops"] == pytest.approx(2 * macs / 1e9)
        assert row["achieved_gflop_s"] == pytest.approx(row["gflops"] / (row["p50_ms"] * 1e-3))
    code, stdout, err = _cli(capsys, "run", "--r", "1,0,0", "--latency-budget", "1000", str(images / "one.png"),
                             "--bundle", str(bundle), "--out", str(tmp_path / "o"), "--json")
    assert code == 0, err
    assert json.loads(stdout)["budget_choice"]["c"] == 0.0     # everything fits: least frugal c


def test_profile_table(capsys, bundle):
    code, stdout, err = _cli(capsys, "profile", "--bundle", str(bundle), "--iters", "2", "--warmup", "0")
    assert code == 0, err
    assert "GFLOP/s" in stdout and "GMACs" in stdout and "GFLOPs" in stdout


def test_run_table_names_both_units(capsys, bundle, images, tmp_path):
    code, stdout, err = _cli(capsys, "run", "--r", "1,0,0", "--c", "0", str(images / "one.png"),
                             "--bundle", str(bundle), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "GMACs (multiply-adds)" in stdout and "GFLOPs (2 x MACs)" in stdout


@pytest.mark.parametrize("command", ["run", "profile"])
def test_tensorrt_profile_picks_tensorrt_and_fails_in_one_line_here(capsys, monkeypatch, bundle, images, tmp_path,
                                                                     command):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    before = (bundle / "manifest.json").read_bytes()
    args = (["run", "--r", "1,0,0", "--c", "0", str(images / "one.png"), "--out", str(tmp_path / "o")]
            if command == "run" else ["profile"])
    code, _, err = _cli(capsys, *args, "--bundle", str(bundle), "--profile", "jetson-orin-nano")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: TensorRT backend unavailable: python package 'tensorrt' is not installed")
    assert (bundle / "manifest.json").read_bytes() == before and not (tmp_path / "o").exists()


def test_profiles_lists_all(capsys):
    code, stdout, _ = _cli(capsys, "profiles", "--json")
    names = {p["name"] for p in json.loads(stdout)}
    assert {"x86-64-cpu", "arm64-cpu", "jetson-orin-nano", "jetson-agx-orin", "rtx-desktop",
            "datacenter-gpu"} <= names
    code, stdout, _ = _cli(capsys, "profiles")
    assert code == 0 and "jetson-agx-orin" in stdout
