"""ONNX Runtime backend: binding modes agree, overrides take effect, disk cache, registry, profiles,
precision (INT8 Q/DQ graphs from `dymu-rt calibrate`, fp16 refused)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
torch.set_num_threads(1)

from bundle_fixture import make_params, read_manifest, weight_deltas, write_bundle  # noqa: E402
from dymu_rt.backends import get_backend  # noqa: E402
from dymu_rt.backends.base import EngineRequest  # noqa: E402
from dymu_rt.backends.onnxruntime import BINDING_MODES, device_facts, fact_mismatches  # noqa: E402
from dymu_rt.backends.devices import load_profile, parse_profile  # noqa: E402
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError  # noqa: E402
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
    eng = be.load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid, artifact=artifact,
                                raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]))
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
    rec = be.compile(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid,
                                   raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]), tmp_path)
    assert (tmp_path / rec["file"]).is_file() and len(rec["sha256"]) == 64
    assert not list(tmp_path.glob(".*.tmp"))
    cached = _run("affine", fx, [0.2, 0.3, 0.5], 0.9, artifact=tmp_path / rec["file"])
    fresh = _run("affine", fx, [0.2, 0.3, 0.5], 0.9)
    for k in fresh:
        np.testing.assert_allclose(cached[k], fresh[k], rtol=1e-5, atol=1e-6)


def test_prepare_is_snapshot(fx):
    """prepare() leaves earlier Bound objects intact (what makes the Runtime thread-safe)."""
    bundle, m, tid, topo, p, fold = fx
    eng = get_backend("onnxruntime").load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid,
                                                        raw_weights=raw_weights(fold, topo["bn_slots"]),
                                                        slots=topo["bn_slots"]))
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


def test_registry(monkeypatch):
    assert get_backend("onnxruntime").name == "onnxruntime"
    with pytest.raises(ValidationError, match="unknown backend 'coreml'"):
        get_backend("coreml")
    # Without the tensorrt package (simulated, so this runs on GPU machines with TensorRT too).
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        get_backend("tensorrt")


@pytest.mark.parametrize("data, key", [
    ({"name": "x", "backend": "onnxruntime", "threads": "four"}, "threads"),
    ({"name": "x", "backend": "onnxruntime", "color": 1}, "color"),
    ({"name": "x", "backend": "onnxruntime", "tensorrt": {"dla_core": -3}}, "tensorrt.dla_core"),
    ({"name": "x", "backend": "onnxruntime", "input": {"batch_min": 4, "batch_max": 2}}, "batch_min"),
    ({"name": "x", "backend": "coreml"}, "backend"),
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
    from dymu_rt.backends.devices import list_profiles

    profs = {p.name: p for p in list_profiles()}
    assert profs["jetson-agx-orin"].dla_core == 0 and profs["jetson-agx-orin"].gpu_fallback
    assert profs["jetson-orin-nano"].dla_core == -1
    assert profs["x86-64-cpu-int8"].backend == "onnxruntime" and profs["x86-64-cpu-int8"].precision == "int8"
    assert all(p.precision == "fp16" for p in profs.values() if p.backend == "tensorrt")


# -- precision -----------------------------------------------------------------------------------

# INT8 vs FP32, per task: mean |int8 - fp32| / mean |fp32| over the batch. Measured 1-3% on every
# grid point of the fixture (3 quantized 3x3 convs + a quantized 1x1 head, activations calibrated on
# 16 procedural scenes, evaluated on 4 others): 8-bit steps (1/255 of each tensor's range) add up
# over 4 layers. 0.08 leaves room for other seeds/CPUs; stale weights (see below) are further off.
INT8_MEAN_REL = 0.08


def mean_rel(a, b):
    return float(np.abs(a - b).mean() / np.abs(b).mean())


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from dymu_rt.compile.calibrate import calibrate_bundle, synth_set

    bundle = write_bundle(tmp_path_factory.mktemp("int8") / "bundle")
    calibrate_bundle(bundle, synth=16, progress=False)
    m = read_manifest(bundle)
    x = synth_set(4, tuple(m["preprocessing"]["input_size"]), seed=5, preprocessing=m["preprocessing"]).images
    return bundle, m, x


def _pair(rt_fp32, rt_int8, x, r, c):
    rt_fp32.set_preference(r, c)
    info = rt_int8.set_preference(r, c)
    return rt_fp32.infer(x), rt_int8.infer(x), info


def test_int8_runtime_close_to_fp32(calibrated):
    from dymu_rt.runtime.runtime import Runtime

    bundle, m, x = calibrated
    f32 = Runtime.open(bundle, cache_engines=False)
    i8 = Runtime.open(bundle, profile="x86-64-cpu-int8")
    for r, c in (([1.0, 0.0, 0.0], 0.5), ([0.5, 0.5, 0.0], 0.0), ([0.2, 0.3, 0.5], 0.9)):
        ref, out, info = _pair(f32, i8, x, r, c)
        engine = i8.cache.get(info["topology"])
        # the affine Q/DQ graph: one session per topology, a preference is new feeds
        assert engine.precision == "int8" and engine.mode == "affine"
        st = i8.stats()
        assert st["precision"] == "int8" and st["binding_mode"] == "affine"
        for k in ref:
            assert out[k].dtype == np.float32 and out[k].shape == ref[k].shape
            assert 0 < mean_rel(out[k], ref[k]) < INT8_MEAN_REL, (r, c, k, mean_rel(out[k], ref[k]))
    assert not (bundle / "engines").exists()          # INT8 graphs are derived at load: no disk cache
    assert not list((bundle / "calibration").rglob("*.onnx"))     # store once: ranges only


def test_int8_preference_switch_binds_weights(calibrated):
    """Two grid points of ONE topology differ only in folded BN: the INT8 engine must follow the
    FP32 engine from one to the other (per-channel weight scales and biases really bound)."""
    from dymu_rt.runtime.runtime import Runtime

    bundle, m, x = calibrated
    by_topology: dict[str, list] = {}
    for p in m["points"]:
        by_topology.setdefault(p["topology"], []).append(p)
    a, b = max(by_topology.values(), key=len)[:2]
    f32 = Runtime.open(bundle, cache_engines=False)
    i8 = Runtime.open(bundle, profile="x86-64-cpu-int8")
    ref_a, out_a, _ = _pair(f32, i8, x, a["r"], a["c"])
    session_a = i8.cache.get(a["topology"])._session
    ref_b, out_b, info = _pair(f32, i8, x, b["r"], b["c"])
    assert info["topology"] == a["topology"] == b["topology"]
    assert i8.cache.get(b["topology"])._session is session_a     # switched by feeds, no new session
    moved = False
    for k in ref_a:
        # B's INT8 output matches B's FP32 output, and is clearly nearer to it than A's FP32 output is
        assert mean_rel(out_b[k], ref_b[k]) < INT8_MEAN_REL
        if mean_rel(ref_a[k], ref_b[k]) > 2 * INT8_MEAN_REL:
            moved = True
            assert mean_rel(out_b[k], ref_b[k]) < 0.5 * mean_rel(out_b[k], ref_a[k]), k
        # and the INT8 change A -> B points the way the FP32 change does
        da, db = (out_b[k] - out_a[k]).ravel(), (ref_b[k] - ref_a[k]).ravel()
        assert float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db))) > 0.9, k
    assert moved, "fixture points A and B too alike to test binding"


@pytest.mark.parametrize("activations", ["int8", "uint8"])
def test_int8_backend_both_activation_variants(calibrated, activations):
    bundle, m, x = calibrated
    tid, topo = next(iter(m["topologies"].items()))
    p = make_params(0)
    fold = {k: v for k, v in p.items() if k.startswith("node")}
    # a preference other than the one the graph (and its calibration) was exported at
    deltas = weight_deltas(p, [0.3, 0.3, 0.4], 0.7)
    weights = {kind: slot_weights(fold, m["bn_layout"], deltas, m["bn_eps"], topo["bn_slots"], kind)
               for kind in ("folded", "affine")}
    ref = get_backend("onnxruntime", binding="session").load(
        EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid, slots=topo["bn_slots"]))
    from dymu_rt.bundle.weight_pool import WeightPool

    pool = WeightPool(bundle, m.get("weights"), fold, m["bn_eps"])
    eng = get_backend("onnxruntime", int8_activations=activations).load(
        EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu-int8"), tid, slots=topo["bn_slots"],
                      pool=pool))
    assert eng.weight_kind == "affine"
    want, got = ref.run(x, ref.prepare(weights["folded"])), eng.run(x, eng.prepare(weights["affine"]))
    for k in want:
        assert mean_rel(got[k], want[k]) < INT8_MEAN_REL, (k, mean_rel(got[k], want[k]))


def test_uncalibrated_topology_refused_in_one_line(calibrated, tmp_path):
    from dymu_rt.bundle.checksum import write_checksum
    from dymu_rt.runtime.runtime import Runtime

    bundle = tmp_path / "bundle"
    shutil.copytree(calibrated[0], bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    tid = sorted(m["topologies"])[1]
    del m["int8"]["files"][tid]
    (bundle / "manifest.json").write_text(json.dumps(m))
    write_checksum(bundle)
    with pytest.raises(BundleError, match=f"topology {tid} .not calibrated.*dymu-rt calibrate {bundle}") as e:
        Runtime.open(bundle, profile="x86-64-cpu-int8")
    assert "\n" not in str(e.value)
    del m["int8"]
    (bundle / "manifest.json").write_text(json.dumps(m))
    write_checksum(bundle)
    with pytest.raises(BundleError, match="dymu-rt calibrate"):
        Runtime.open(bundle, profile="x86-64-cpu-int8")
    Runtime.open(bundle)                                 # fp32 does not need calibration


def test_fp16_refused_in_one_line(calibrated, tmp_path):
    from dymu_rt.runtime.runtime import Runtime

    prof = tmp_path / "cpu-fp16.toml"
    prof.write_text('name = "cpu-fp16"\nbackend = "onnxruntime"\nprecision = "fp16"\n')
    with pytest.raises(ValidationError, match="precision 'fp16' is not supported by the onnxruntime backend") as e:
        Runtime.open(calibrated[0], profile=str(prof))
    assert "\n" not in str(e.value) and "tensorrt" in str(e.value)


def test_engine_cache_files_carry_precision(fx, tmp_path):
    from dymu_rt.backends.onnxruntime import artifact_precision

    bundle, m, tid, topo, p, fold = fx
    be = get_backend("onnxruntime")
    rec = be.compile(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid,
                                   raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]), tmp_path)
    assert rec["file"] == f"{tid}.fp32.ort.onnx" and artifact_precision(rec["file"]) == "fp32"
    assert artifact_precision(f"{tid}.ort.onnx") == "fp32" and artifact_precision(f"{tid}.int8.ort.onnx") == "int8"
    with pytest.raises(ValueError, match="fp32 affine"):
        be.compile(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu-int8"), tid,
                                 raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]), tmp_path)
    # an optimized graph of another precision is never loaded as this profile's engine
    (tmp_path / f"{tid}.int8.ort.onnx").write_bytes(b"not an fp32 graph")
    eng = be.load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid,
                                artifact=tmp_path / f"{tid}.int8.ort.onnx",
                                raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]))
    assert set(eng.run(X, eng.prepare(slot_weights(fold, m["bn_layout"], weight_deltas(p, [1, 0, 0], 0.0),
                                                   m["bn_eps"], topo["bn_slots"], "affine")))) == {"semseg", "normals", "depth"}


def test_affine_inputs_take_one_row_per_image(fx):
    """The affine graph declares scale/shift as [pref_batch, C, 1, 1]: the Runtime's one row
    broadcasts over the batch, and B rows give each image its own preference (what a server's
    dynamic batcher needs) with the same answers. pref_batch is not the image's symbol: ONNX
    Runtime may assume dims under one symbol equal (the INT8 batch-2 crash of issue 28)."""
    from dymu_rt.backends.affine import AFFINE_BATCH
    from dymu_rt.backends.onnxruntime import Bound

    bundle, m, tid, topo, p, fold = fx
    eng = get_backend("onnxruntime").load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu"), tid,
                                                        raw_weights=raw_weights(fold, topo["bn_slots"]),
                                                        slots=topo["bn_slots"]))
    bound = [eng.prepare(slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"], topo["bn_slots"],
                                      "affine")) for r, c in (([0.2, 0.3, 0.5], 0.9), ([0.7, 0.2, 0.1], 0.1))]
    shapes = {i.name: i.shape for i in bound[0].session.get_inputs()}
    slot = topo["bn_slots"][0]
    assert shapes[f"{slot}.scale"][0] == shapes[f"{slot}.shift"][0] == AFFINE_BATCH != shapes["image"][0]
    mixed = Bound(bound[0].session, {k: np.concatenate([bound[0].feeds[k], bound[1].feeds[k]])
                                     for k in bound[0].feeds})
    out = eng.run(X, mixed)
    alone = [eng.run(X, b) for b in bound]
    for k in out:
        np.testing.assert_allclose(out[k][0], alone[0][k][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[k][1], alone[1][k][1], rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(alone[0][k][1], alone[1][k][1], atol=1e-4) for k in out)
