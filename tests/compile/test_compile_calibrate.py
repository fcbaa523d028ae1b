"""`dymu-rt calibrate` on a fixture bundle: image folders and procedural scenes, the
per-topology cache, the manifest record, and one-line errors that write nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from graph_fixtures import make_bundle, write_images

from dymu_rt.bundle.manifest import Manifest, read_manifest
from dymu_rt.bundle.sections import cache_key, fold_params_sha256, int8_ranges, weights_sha256
from dymu_rt.compile.calibrate import calibrate_bundle, image_folder_set, synth_set
from dymu_rt.core.errors import BundleError, ValidationError
from dymu_rt.core.io import atomic_write_json, sha256_file

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal")
    return {"bundle": make_bundle(d / "bundle"), "images": write_images(d / "images")}


@pytest.fixture
def bundle(base, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(base["bundle"], dst)
    return dst


def cli(*args):
    from typer.testing import CliRunner

    from dymu_rt.cli.main import app

    return CliRunner().invoke(app, ["calibrate", *map(str, args)])


def test_image_folder_set_is_resized_rgb_in_unit_range(base):
    cset = image_folder_set(base["images"], (32, 32))
    assert cset.images.shape == (6, 3, 32, 32) and cset.images.dtype == np.float32
    assert 0.0 <= cset.images.min() and cset.images.max() <= 1.0
    assert cset.describe()["count"] == 6 and len(cset.digest) == 64
    normalized = image_folder_set(base["images"], (32, 32), {"normalize_in_graph": False,
                                                               "mean": [0.5] * 3, "std": [0.25] * 3})
    np.testing.assert_allclose(normalized.images, (cset.images - 0.5) / 0.25, rtol=1e-6)
    assert normalized.digest != cset.digest


def test_calibrate_cli_writes_ranges_only_and_manifest(bundle, base):
    res = cli(bundle, "--images", base["images"], "--method", "minmax", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["topologies"] == 2 and summary["quantized"] == 2 and summary["reused"] == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    rec = manifest["int8"]
    assert rec["method"] == "minmax" and rec["calibration"]["count"] == 6
    from dymu_rt.backends.int8_affine import affine_qdq_model
    from dymu_rt.bundle.weight_pool import WeightPool

    for tid, entry in rec["files"].items():
        path = bundle / entry["ranges"]["file"]
        assert path.parent.parent == bundle / "calibration" / tid and path.name == "ranges.json"
        assert sha256_file(path) == entry["ranges"]["sha256"] and (path.parent / "meta.json").is_file()
        # store once: no Q/DQ graph is stored, only the ranges it derives from
        assert not list(path.parent.glob("*.onnx"))
        m = Manifest.from_dict(manifest)
        assert entry["key"] == cache_key(manifest["topologies"][tid]["sha256"], rec["calibration"]["digest"], "minmax",
                                         weights_sha256(m), fold_params_sha256(m))
        assert int8_ranges(bundle, m, tid, check=True) == path
        import onnxruntime as ort

        graph = bundle / manifest["topologies"][tid]["file"]
        for act in ("uint8", "int8"):               # ORT x86 form and TensorRT's symmetric form
            model = affine_qdq_model(graph, WeightPool(bundle, None, {}, 1e-5), [], path, act)
            assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            outs = sess.run(None, {"image": np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)})
            assert [o.shape for o in outs] == [(2, 5, 32, 32), (2, 1, 32, 32)]


def test_rerun_reuses_cache_and_other_method_adds_a_key(bundle, base):
    first = calibrate_bundle(bundle, images=base["images"], progress=False)
    before = json.loads((bundle / "manifest.json").read_text())["int8"]["files"]
    again = calibrate_bundle(bundle, images=base["images"], progress=False)
    assert (first["quantized"], again["quantized"], again["reused"]) == (2, 0, 2)
    assert json.loads((bundle / "manifest.json").read_text())["int8"]["files"] == before
    other = calibrate_bundle(bundle, images=base["images"], method="percentile", progress=False)
    after = json.loads((bundle / "manifest.json").read_text())["int8"]
    assert other["quantized"] == 2 and after["method"] == "percentile"
    assert all(after["files"][t]["key"] != before[t]["key"] for t in before)
    assert len(list((bundle / "calibration" / "0000000000000000").iterdir())) == 2     # both results kept


def test_synth_calibration_set(bundle):
    res = calibrate_bundle(bundle, synth=3, progress=False)
    assert res["calibration"]["kind"] == "synth" and res["calibration"]["count"] == 3
    assert res["calibration"]["digest"] == synth_set(3, (32, 32)).digest
    other = calibrate_bundle(bundle, synth=3, seed=1, progress=False)
    assert other["quantized"] == 2 and other["calibration"]["digest"] != res["calibration"]["digest"]


@pytest.mark.parametrize("args, message", [
    ((), "exactly one calibration set"),
    (("--synth", "2", "--images", "."), "exactly one calibration set"),
    (("--synth", "0"), "--synth 0"),
    (("--images", "{bundle}/graphs/0000000000000000.onnx"), "not a directory"),
    (("--images", "{bundle}/graphs"), "no image files"),
    (("--images", "{images}", "--method", "kl"), "--method 'kl'"),
    (("--images", "{images}", "--profile", "x86-64-cpu"), "precision 'fp32'"),
])
def test_bad_inputs_are_one_line_errors_and_write_nothing(bundle, base, args, message):
    from dymu_rt.cli.main import main

    before = (bundle / "manifest.json").read_bytes()
    argv = [a.format(bundle=bundle, images=base["images"]) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate", str(bundle), *argv])
    assert exit_info.value.code == 2
    assert (bundle / "manifest.json").read_bytes() == before
    assert not (bundle / "calibration").exists()
    with pytest.raises((ValidationError, BundleError), match=message.replace("'", ".").replace("(", ".")):
        main(["--debug", "calibrate", str(bundle), *argv])


def test_corrupt_graph_and_missing_bundle_are_refused(bundle, base, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        calibrate_bundle(tmp_path / "nope", images=base["images"], progress=False)
    (bundle / "graphs" / "0101010101010101.onnx").write_bytes(b"broken")
    with pytest.raises(BundleError, match="0101010101010101.onnx is corrupt"):
        calibrate_bundle(bundle, images=base["images"], progress=False)
    assert "int8" not in json.loads((bundle / "manifest.json").read_text())
    with pytest.raises(BundleError, match="dymu-rt calibrate"):
        int8_ranges(bundle, read_manifest(bundle), "0000000000000000")


def test_stale_or_tampered_int8_ranges_are_refused(bundle, base):
    calibrate_bundle(bundle, images=base["images"], progress=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    rebuilt = json.loads(json.dumps(manifest))
    rebuilt["topologies"]["0000000000000000"]["sha256"] = "0" * 64            # the FP32 graph changed since
    with pytest.raises(BundleError, match="0000000000000000 was made for another version.*dymu-rt calibrate"):
        int8_ranges(bundle, Manifest.from_dict(rebuilt), "0000000000000000", check=True)
    (bundle / manifest["int8"]["files"]["0101010101010101"]["ranges"]["file"]).write_bytes(b"tampered")
    with pytest.raises(BundleError, match="corrupt"):
        int8_ranges(bundle, Manifest.from_dict(manifest), "0101010101010101", check=True)


def test_shipped_default_bundle_is_refused_and_untouched(base):
    from dymu_rt.bundle.layout import default_bundle_path

    shipped = default_bundle_path()
    before = (shipped / "manifest.json").read_bytes()
    with pytest.raises(ValidationError, match="read-only package data; copy it first") as info:
        calibrate_bundle(shipped, images=base["images"], progress=False)
    assert "\n" not in str(info.value)
    assert (shipped / "manifest.json").read_bytes() == before and not (shipped / "calibration").exists()
