"""Runtime.open validates bundles: checksums, schema version, engines for another device."""

import json

import pytest

from dymu_rt.errors import BundleError, ValidationError
from dymu_rt.runtime import Runtime, default_bundle_path


def _edit(bundle, fn):
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def test_opens_fixture(bundle):
    rt = Runtime.open(bundle)
    assert rt.task_names == ["semseg", "normals", "depth"]


def test_corrupted_graph_is_detected(bundle):
    graph = next((bundle / "graphs").iterdir())
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{graph.name} is corrupt"):
        Runtime.open(bundle)


def test_missing_controller_file(bundle):
    (bundle / "controller" / "weight_hypernet.onnx").unlink()
    with pytest.raises(BundleError, match="weight_hypernet.onnx is missing"):
        Runtime.open(bundle)


def test_newer_schema_refused(bundle):
    _edit(bundle, lambda m: m.__setitem__("schema_version", 99))
    with pytest.raises(BundleError, match="schema_version 99, newer than this dymu-rt understands"):
        Runtime.open(bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a dymu-rt bundle"):
        Runtime.open(tmp_path)


def _cache_one_engine(bundle):
    rt = Runtime.open(bundle)
    rt.set_preference([1, 0, 0], 0)
    m = json.loads((bundle / "manifest.json").read_text())
    rec = m["engines"]["onnxruntime"]["x86-64-cpu"]
    assert len(rec["files"]) == 1 and rec["onnxruntime"]
    return rec


def test_engines_for_another_device_refused_then_rebuilt(bundle):
    _cache_one_engine(bundle)
    _edit(bundle, lambda m: m["engines"]["onnxruntime"]["x86-64-cpu"].update(onnxruntime="0.0.1", isa=["neon"]))
    with pytest.raises(BundleError, match=r"built for another device or version.*--rebuild-engines"):
        Runtime.open(bundle)
    rt = Runtime.open(bundle, rebuild_engines=True)          # the hint works
    rt.set_preference([1, 0, 0], 0)
    assert json.loads((bundle / "manifest.json").read_text())["engines"]["onnxruntime"]["x86-64-cpu"][
        "onnxruntime"] != "0.0.1"


def test_cached_engine_corruption_detected(bundle):
    rec = _cache_one_engine(bundle)
    path = bundle / next(iter(rec["files"].values()))["file"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BundleError, match="corrupt"):
        Runtime.open(bundle)


def test_cached_engine_reused_without_recompiling(bundle):
    rec = _cache_one_engine(bundle)
    path = bundle / next(iter(rec["files"].values()))["file"]
    mtime = path.stat().st_mtime_ns
    rt = Runtime.open(bundle)
    rt.set_preference([1, 0, 0], 0)
    assert path.stat().st_mtime_ns == mtime


def test_profile_for_another_backend_refused(bundle):
    with pytest.raises(ValidationError, match="profile 'jetson-orin-nano' is for backend 'tensorrt'"):
        Runtime.open(bundle, profile="jetson-orin-nano")


def test_unknown_backend_and_binding(bundle):
    with pytest.raises(ValidationError, match="unknown backend 'tflite'"):
        Runtime.open(bundle, backend="tflite")
    with pytest.raises(ValidationError, match="binding mode 'magic'"):
        Runtime.open(bundle, binding="magic")


def test_default_bundle_missing_is_clear(monkeypatch, tmp_path):
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda pkg: tmp_path)
    with pytest.raises(BundleError, match="no --bundle given and no default bundle is installed"):
        default_bundle_path()
