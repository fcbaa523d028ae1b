"""Runtime.open validates bundles: checksums, schema version, engines for another device."""

import json

import pytest

from dymu_rt.bundle.checksum import write_checksum
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError
from dymu_rt.runtime import Runtime, default_bundle_path


def _edit(bundle, fn):
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))
    write_checksum(bundle)          # as a dymu-rt on that other device would have written it


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
    with pytest.raises(ValidationError, match="profile 'jetson-orin-nano' is for backend 'tensorrt', not 'onnxruntime'"):
        Runtime.open(bundle, backend="onnxruntime", profile="jetson-orin-nano")


def test_backend_comes_from_the_profile(bundle, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)          # no TensorRT on this machine
    with pytest.raises(BackendUnavailable) as e:
        Runtime.open(bundle, profile="jetson-orin-nano")
    assert "\n" not in str(e.value) and "TensorRT backend unavailable" in str(e.value)
    assert Runtime.open(bundle).backend.name == "onnxruntime"   # x86-64-cpu -> ONNX Runtime
    with pytest.raises(ValidationError, match="--binding 'session' applies to the onnxruntime / openvino backend only; profile 'jetson-orin-nano' uses 'tensorrt'"):
        Runtime.open(bundle, profile="jetson-orin-nano", binding="session")


def _write_profile(tmp_path, text):
    f = tmp_path / "p.toml"
    f.write_text(text)
    return f


def test_profile_input_shape_must_match_the_bundle(bundle, tmp_path):
    h, w = json.loads((bundle / "manifest.json").read_text())["preprocessing"]["input_size"]
    good = _write_profile(tmp_path, f'name = "p"\nbackend = "onnxruntime"\n[input]\nshape = [3, {h}, {w}]\n')
    assert Runtime.open(bundle, profile=str(good)).profile.shape == (3, h, w)
    bad = _write_profile(tmp_path, 'name = "p"\nbackend = "onnxruntime"\n[input]\nshape = [3, 64, 48]\n')
    with pytest.raises(ValidationError) as e:
        Runtime.open(bundle, profile=str(bad))
    assert "\n" not in str(e.value)
    assert f"key 'input.shape' = [3, 64, 48] but bundle {bundle} takes [3, {h}, {w}] images" in str(e.value)


@pytest.mark.parametrize("name", ["../../evil", "..", ".", "a/b", "sp ace", ""])
def test_profile_name_that_is_not_a_plain_folder_name_is_refused(bundle, tmp_path, name):
    f = _write_profile(tmp_path, f'name = "{name}"\nbackend = "onnxruntime"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValidationError, match="key 'name'"):
        Runtime.open(bundle, profile=str(f), rebuild_engines=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (bundle / "manifest.json").is_file()


def test_engines_dir_rejects_traversal_even_without_parse():
    from dymu_rt.bundle.sections import engines_dir

    assert engines_dir("tensorrt", "jetson-orin-nano") == "engines/tensorrt/jetson-orin-nano"
    for bad in ("../x", "..", "a/b"):
        with pytest.raises(ValidationError, match="profile name"):
            engines_dir("onnxruntime", bad)


def test_rebuild_engines_refused_for_the_shipped_bundle_before_writing():
    shipped = default_bundle_path()
    before = (shipped / "manifest.json").read_bytes()
    with pytest.raises(ValidationError, match="--rebuild-engines: the shipped default bundle .* is read-only"):
        Runtime.open(shipped, rebuild_engines=True)
    assert (shipped / "manifest.json").read_bytes() == before


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
