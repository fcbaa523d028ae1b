"""ONNX Runtime backend: binding modes agree, overrides take effect, disk cache, registry, profiles."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
torch.set_num_threads(1)

from bundle_fixture import make_params, read_manifest, weight_deltas, write_bundle  # noqa: E402
from dymu_rt.backends import get_backend  # noqa: E402
from dymu_rt.backends.onnxruntime import BINDING_MODES, device_facts, fact_mismatches  # noqa: E402
from dymu_rt.backends.profile import load_profile, parse_profile  # noqa: E402
from dymu_rt.errors import BackendUnavailable, ValidationError  # noqa: E402
from dymu_rt.runtime.binding import raw_weights, slot_weights  # noqa: E402

X = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    bundle = write_bundle(tmp_path_factory.mktemp("b") / "bundle")
    m = read_manifest(bundle)
    tid, topo = max(m["topologies"].items(), key=lambda kv: len(kv[1]["bn_slots"]))
    p = make_params(0)
    fold = {k: v for k, v in p.items() if k.startswith("node")}
    return bundle, m, tid, topo, p, fold


def _run(mode, fx, r, c, artifact=None):
    bundle, m, tid, topo, p, fold = fx
    be = get_backend("onnxruntime", binding=mode)
    eng = be.load(bundle / topo["file"], artifact, load_profile("x86-64-cpu"), tid,
                  raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"])
    w = slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"], topo["bn_slots"], eng.weight_kind)
    eng.bind(w)
    return eng.run(X)


def test_modes_agree_and_overrides_take_effect(fx):
    # A preference other than the graph's export point: an ignored override would show.
    outs = {mode: _run(mode, fx, [0.2, 0.3, 0.5], 0.9) for mode in BINDING_MODES}
    exported = _run("session", fx, **{"r": fx[3]["exported_at"]["r"], "c": fx[3]["exported_at"]["c"]})
    for mode in BINDING_MODES:
        for k in outs["session"]:
            np.testing.assert_allclose(outs[mode][k], outs["session"][k], rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(outs["initializers"][k], exported[k], atol=1e-3) for k in exported)


def test_disk_cached_affine_graph_same_outputs(fx, tmp_path):
    bundle, m, tid, topo, p, fold = fx
    be = get_backend("onnxruntime")
    rec = be.compile(bundle / topo["file"], tmp_path, load_profile("x86-64-cpu"), tid,
                     raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"])
    assert (tmp_path / rec["file"]).is_file() and len(rec["sha256"]) == 64
    assert not list(tmp_path.glob(".*.tmp"))
    cached = _run("affine", fx, [0.2, 0.3, 0.5], 0.9, artifact={"path": tmp_path / rec["file"]})
    fresh = _run("affine", fx, [0.2, 0.3, 0.5], 0.9)
    for k in fresh:
        np.testing.assert_allclose(cached[k], fresh[k], rtol=1e-5, atol=1e-6)


def test_prepare_is_snapshot(fx):
    """prepare() leaves earlier Bound objects intact (what makes the Runtime thread-safe)."""
    bundle, m, tid, topo, p, fold = fx
    eng = get_backend("onnxruntime").load(bundle / topo["file"], None, load_profile("x86-64-cpu"), tid,
                                          raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"])
    mk = lambda r, c: eng.prepare(slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"],  # noqa: E731
                                               topo["bn_slots"], "affine"))
    a = mk([1, 0, 0], 0.0)
    before = eng.run(X, a)
    mk([0, 0, 1], 1.0)
    after = eng.run(X, a)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_device_facts_and_mismatch():
    f = device_facts()
    assert f["backend"] == "onnxruntime" and f["onnxruntime"] and f["machine"]
    assert fact_mismatches(f, f) == []
    assert fact_mismatches({**f, "isa": ["neon"]}, f) and fact_mismatches({**f, "onnxruntime": "0.1"}, f)


def test_registry():
    assert get_backend("onnxruntime").name == "onnxruntime"
    with pytest.raises(ValidationError, match="unknown backend 'coreml'"):
        get_backend("coreml")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="tensorrt"):
            get_backend("tensorrt")


@pytest.mark.parametrize("data, key", [
    ({"name": "x", "backend": "onnxruntime", "threads": "four"}, "threads"),
    ({"name": "x", "backend": "onnxruntime", "color": 1}, "color"),
    ({"name": "x", "backend": "onnxruntime", "tensorrt": {"dla_core": -3}}, "tensorrt.dla_core"),
    ({"name": "x", "backend": "onnxruntime", "input": {"batch_min": 4, "batch_max": 2}}, "batch_min"),
    ({"name": "x", "backend": "openvino"}, "backend"),
])
def test_bad_profile_names_offending_key(data, key):
    with pytest.raises(ValidationError, match=key):
        parse_profile(data, "bad.toml")


def test_bad_profile_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('name = "p"\nbackend = "onnxruntime"\n[memory]\nengine_cache_mb = 0\n')
    with pytest.raises(ValidationError, match="memory.engine_cache_mb"):
        load_profile(f)


def test_shipped_profiles_valid():
    from dymu_rt.backends.profile import list_profiles

    profs = {p.name: p for p in list_profiles()}
    assert profs["jetson-agx-orin"].dla_core == 0 and profs["jetson-agx-orin"].gpu_fallback
    assert profs["jetson-orin-nano"].dla_core == -1
    assert all(p.precision == "fp16" for p in profs.values() if p.backend == "tensorrt")
