"""OpenVINO backend: outputs against ONNX Runtime FP32 in both binding modes and every precision,
preference switches, thread-safe snapshots, the missing-package and no-BF16 refusals, profiles.

Cost: ~15 s on 2 cores (the 16x16 contract bundle; one INT8 calibration of 16 scenes; each
OpenVINO compile ~0.1-0.3 s)."""

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
from dymu_rt.backends.devices import load_profile, parse_profile, with_threads  # noqa: E402
from dymu_rt.core.errors import BackendUnavailable, ValidationError  # noqa: E402
from dymu_rt.runtime.binding import raw_weights, slot_weights  # noqa: E402

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'dymu-rt[openvino]')")
from dymu_rt.backends import openvino as ovb  # noqa: E402

X = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
OFF_GRID = ([0.2, 0.3, 0.5], 0.9)        # not the point the graphs were exported at
HAS_BF16 = ovb.bf16_support()[0]
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native BF16 (AVX512_BF16 / AMX)")

#: bf16 vs fp32 on the fixture: max |diff| measured 0.5-1.4 % of each output's largest magnitude
#: (8 mantissa bits through 4 layers); 4 % leaves room for other CPUs; an all-zero output is 100 %.
BF16_MAX_REL = 0.04
#: INT8 vs FP32: mean |diff| / mean |fp32|, as tests/backends/test_backend_onnxruntime.py (1-8 % measured)
INT8_MEAN_REL = 0.08


def max_rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def mean_rel(a, b):
    return float(np.abs(a - b).mean() / np.abs(b).mean())


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    bundle = write_bundle(tmp_path_factory.mktemp("b") / "bundle")
    m = read_manifest(bundle)
    tid, topo = max(m["topologies"].items(), key=lambda kv: len(kv[1]["bn_slots"]))
    p = make_params(0)
    fold = {k: v for k, v in p.items() if k.startswith("node")}
    return bundle, m, tid, topo, p, fold


def _run(fx, profile, binding, r, c, backend="openvino"):
    bundle, m, tid, topo, p, fold = fx
    eng = get_backend(backend, binding=binding).load(
        EngineRequest(bundle / topo["file"], load_profile(profile), tid,
                      raw_weights=raw_weights(fold, topo["bn_slots"]), slots=topo["bn_slots"]))
    w = slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"], topo["bn_slots"], eng.weight_kind)
    return eng, eng.run(X, eng.prepare(w))


@pytest.fixture(scope="module")
def ort_ref(fx):
    return _run(fx, "x86-64-cpu", "session", *OFF_GRID, backend="onnxruntime")[1]


@pytest.mark.parametrize("binding", ovb.BINDING_MODES)
def test_fp32_equals_ort_fp32_in_both_modes(fx, ort_ref, binding):
    # Tight: this also shows INFERENCE_PRECISION_HINT = f32 is set (OpenVINO's CPU default is
    # bf16 on a BF16 CPU, ~1e-2 off).
    eng, out = _run(fx, "x86-64-cpu-openvino", binding, *OFF_GRID)
    assert eng.mode == binding and eng.weight_kind == ("affine" if binding == "affine" else "folded")
    for k in ort_ref:
        assert out[k].dtype == np.float32 and out[k].shape == ort_ref[k].shape
        np.testing.assert_allclose(out[k], ort_ref[k], rtol=1e-4, atol=1e-5)
    exported = _run(fx, "x86-64-cpu", "session", fx[3]["exported_at"]["r"], fx[3]["exported_at"]["c"],
                    backend="onnxruntime")[1]
    assert any(not np.allclose(out[k], exported[k], atol=1e-3) for k in exported)   # the weights were bound


@needs_bf16
@pytest.mark.parametrize("binding", ovb.BINDING_MODES)
def test_bf16_close_to_ort_fp32_and_really_bf16(fx, ort_ref, binding):
    _, out = _run(fx, "x86-64-cpu-openvino-bf16", binding, *OFF_GRID)
    errs = {k: max_rel(out[k], ort_ref[k]) for k in ort_ref}
    assert all(e < BF16_MAX_REL for e in errs.values()), errs
    assert max(errs.values()) > 1e-4, errs          # bf16 arithmetic really ran (fp32 is ~1e-7 off)


def test_prepare_is_snapshot_and_affine_switch_keeps_the_compiled_model(fx):
    bundle, m, tid, topo, p, fold = fx
    eng = get_backend("openvino").load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu-openvino"), tid,
                                                     raw_weights=raw_weights(fold, topo["bn_slots"]),
                                                     slots=topo["bn_slots"]))
    mk = lambda r, c: eng.prepare(slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"],  # noqa: E731
                                               topo["bn_slots"], "affine"))
    a = mk([1, 0, 0], 0.0)
    before = eng.run(X, a)
    b = mk([0, 0, 1], 1.0)
    assert b.compiled is a.compiled                      # a switch is new inputs, not a compile
    assert all(np.array_equal(before[k], eng.run(X, a)[k]) for k in before)
    assert any(not np.allclose(before[k], eng.run(X, b)[k], atol=1e-3) for k in before)


def test_affine_inputs_take_one_row_per_image(fx):
    bundle, m, tid, topo, p, fold = fx
    eng = get_backend("openvino").load(EngineRequest(bundle / topo["file"], load_profile("x86-64-cpu-openvino"), tid,
                                                     raw_weights=raw_weights(fold, topo["bn_slots"]),
                                                     slots=topo["bn_slots"]))
    prefs = (([0.2, 0.3, 0.5], 0.9), ([0.7, 0.2, 0.1], 0.1))
    bound = [eng.prepare(slot_weights(fold, m["bn_layout"], weight_deltas(p, r, c), m["bn_eps"], topo["bn_slots"],
                                      "affine")) for r, c in prefs]
    mixed = ovb.Bound(bound[0].compiled, {k: np.concatenate([bound[0].feeds[k], bound[1].feeds[k]])
                                          for k in bound[0].feeds})
    out = eng.run(X, mixed)
    for i in range(2):
        single = eng.run(X[i:i + 1], bound[i])
        for k in out:
            np.testing.assert_allclose(out[k][i:i + 1], single[k], rtol=1e-5, atol=1e-6)


def test_runtime_switches_preferences_like_ort(fx, tmp_path):
    """Through the Runtime: topologies and preferences switched back and forth, in both modes,
    every result equals ONNX Runtime FP32 at the same preference."""
    from dymu_rt.runtime import Runtime

    bundle = tmp_path / "bundle"
    shutil.copytree(fx[0], bundle)
    ref = Runtime.open(bundle, binding="session", cache_engines=False)
    prefs = [([1, 0, 0], 0.0), ([0.2, 0.3, 0.5], 0.9), ([0, 0, 1], 1.0), ([1, 0, 0], 0.0)]
    for binding in ovb.BINDING_MODES:
        rt = Runtime.open(bundle, profile="x86-64-cpu-openvino", binding=binding)
        topologies = set()
        for r, c in prefs:
            info = rt.set_preference(r, c)
            assert ref.set_preference(r, c)["topology"] == info["topology"]
            topologies.add(info["topology"])
            want, got = ref.infer(X), rt.infer(X)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
        st = rt.stats()
        assert st["backend"] == "openvino" and st["binding_mode"] == binding and st["precision"] == "fp32"
        assert len(topologies) > 1
        rt.close()
    assert not (bundle / "engines").exists()             # compiled in memory, nothing written


def test_second_tier_folded_engine_serves_and_equals_ort(fx, tmp_path):
    """The two-tier contract (backends/base.py) on OpenVINO: with the affine binding, the
    Runtime's second tier builds the preference's folded OpenVINO engine; it serves (tier
    "folded") and equals ONNX Runtime FP32; a bind into it is refused."""
    from dymu_rt.runtime import Runtime

    bundle = tmp_path / "bundle"
    shutil.copytree(fx[0], bundle)
    ref = Runtime.open(bundle, binding="session", cache_engines=False)
    rt = Runtime.open(bundle, profile="x86-64-cpu-openvino", second_tier="sync")
    assert rt.second_tier == "sync" and rt.backend.folds(rt.profile)
    for r, c in (([0.2, 0.3, 0.5], 0.9), ([1, 0, 0], 0.0)):
        rt.set_preference(r, c)
        ref.set_preference(r, c)
        got, want = rt.infer(X), ref.infer(X)
        assert rt.stats()["tier"] == "folded"
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5)
    engine = rt._state.engine
    assert engine.tier == "folded" and engine.mode == "folded"
    with pytest.raises(RuntimeError, match="load_folded"):
        engine.bind({})
    rt.close()
    assert not get_backend("openvino", binding="session").folds(load_profile("x86-64-cpu-openvino"))


# -- INT8 ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from dymu_rt.compile.calibrate import calibrate_bundle, synth_set

    bundle = write_bundle(tmp_path_factory.mktemp("int8") / "bundle")
    calibrate_bundle(bundle, synth=16, progress=False)
    m = read_manifest(bundle)
    x = synth_set(4, tuple(m["preprocessing"]["input_size"]), seed=5, preprocessing=m["preprocessing"]).images
    return bundle, m, x


@pytest.mark.parametrize("binding", ovb.BINDING_MODES)
def test_int8_close_to_ort_fp32_in_both_modes(calibrated, binding):
    from dymu_rt.runtime import Runtime

    bundle, m, x = calibrated
    f32 = Runtime.open(bundle, binding="session", cache_engines=False)
    i8 = Runtime.open(bundle, profile="x86-64-cpu-openvino-int8", binding=binding)
    by_topology: dict[str, list] = {}
    for pt in m["points"]:
        by_topology.setdefault(pt["topology"], []).append(pt)
    a, b = max(by_topology.values(), key=len)[:2]          # two points of one topology: only BN differs
    outs = {}
    for pt in (a, b):
        f32.set_preference(pt["r"], pt["c"])
        i8.set_preference(pt["r"], pt["c"])
        outs[id(pt)] = (f32.infer(x), i8.infer(x))
    assert i8.stats()["precision"] == "int8" and i8.stats()["binding_mode"] == binding
    moved = False
    for k in outs[id(a)][0]:
        (ref_a, out_a), (ref_b, out_b) = (outs[id(a)][0][k], outs[id(a)][1][k]), (outs[id(b)][0][k], outs[id(b)][1][k])
        assert 0 < mean_rel(out_a, ref_a) < INT8_MEAN_REL and 0 < mean_rel(out_b, ref_b) < INT8_MEAN_REL, k
        if mean_rel(ref_a, ref_b) > 2 * INT8_MEAN_REL:          # B's weights were bound, not A's kept
            moved = True
            assert mean_rel(out_b, ref_b) < 0.5 * mean_rel(out_b, ref_a), k
    assert moved, "fixture points A and B too alike to test binding"


def test_int8_uncalibrated_refused_in_one_line(fx):
    from dymu_rt.core.errors import BundleError
    from dymu_rt.runtime import Runtime

    with pytest.raises(BundleError, match="dymu-rt calibrate") as e:
        Runtime.open(fx[0], profile="x86-64-cpu-openvino-int8")
    assert "\n" not in str(e.value)


# -- refusals --------------------------------------------------------------------------------------

def test_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)         # import openvino -> ImportError
    with pytest.raises(BackendUnavailable) as e:
        get_backend("openvino")
    msg = str(e.value)
    assert 'pip install "dymu-rt[openvino]"' in msg and "\n" not in msg


def test_missing_package_through_the_cli(monkeypatch, capsys, fx, tmp_path):
    from cli_helpers import run_cli

    monkeypatch.setitem(sys.modules, "openvino", None)
    bundle = tmp_path / "bundle"
    shutil.copytree(fx[0], bundle)
    before = (bundle / "manifest.json").read_bytes()
    code, _, err = run_cli(capsys, "profile", "--bundle", str(bundle), "--profile", "x86-64-cpu-openvino")
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert 'pip install "dymu-rt[openvino]"' in err and "Traceback" not in err
    assert (bundle / "manifest.json").read_bytes() == before


def test_bf16_refused_on_a_cpu_without_bf16(monkeypatch, fx):
    from dymu_rt.runtime import Runtime

    monkeypatch.setattr(ovb, "cpu_flags", lambda: {"sse4_1", "avx2", "avx512f", "avx512_vnni"})
    with pytest.raises(ValidationError, match=r"precision 'bf16' needs a CPU with native BF16 \(AVX512_BF16 or "
                                              r"AMX\); this one has none \(/proc/cpuinfo") as e:
        Runtime.open(fx[0], profile="x86-64-cpu-openvino-bf16")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(ovb, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert ovb.bf16_refusal(load_profile("x86-64-cpu-openvino-bf16")) is None


def test_bf16_without_cpuinfo_asks_openvino(monkeypatch):
    class FakeCore:
        def __init__(self, caps):
            self.caps = caps

        def get_property(self, device, name):
            assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return self.caps

    monkeypatch.setattr(ovb, "cpu_flags", lambda: set())          # no /proc/cpuinfo (not Linux)
    monkeypatch.setattr(ovb, "core", lambda: FakeCore(["FP32", "INT8", "BIN"]))
    reason = ovb.bf16_refusal(load_profile("x86-64-cpu-openvino-bf16"))
    assert reason is not None and "OPTIMIZATION_CAPABILITIES" in reason
    monkeypatch.setattr(ovb, "core", lambda: FakeCore(["FP32", "BF16", "INT8"]))
    assert ovb.bf16_refusal(load_profile("x86-64-cpu-openvino-bf16")) is None


def test_unknown_binding_and_fp16_refused():
    with pytest.raises(ValidationError, match="binding mode 'initializers' is not offered by the openvino"):
        get_backend("openvino", binding="initializers")
    prof = parse_profile({"name": "ov16", "backend": "openvino", "precision": "fp16"}, "ov16.toml")
    with pytest.raises(ValidationError, match="precision 'fp16' is not supported by the openvino backend"):
        get_backend("openvino").check_bundle(Path("."), None, prof)


# -- profiles -------------------------------------------------------------------------------------

def test_shipped_openvino_profiles_and_their_compile_config():
    want = {"x86-64-cpu-openvino": ("fp32", "f32"), "x86-64-cpu-openvino-bf16": ("bf16", "bf16"),
            "x86-64-cpu-openvino-int8": ("int8", "f32")}
    for name, (precision, hint) in want.items():
        prof = load_profile(name)
        assert prof.backend == "openvino" and prof.precision == precision
        cfg = ovb.compile_config(prof, precision)
        # the hint is always explicit: the CPU plugin's own default is bf16 on BF16 CPUs
        assert cfg["INFERENCE_PRECISION_HINT"] == hint and cfg["PERFORMANCE_HINT"] == "LATENCY"
        assert cfg["ENABLE_CPU_PINNING"] is False
        assert "INFERENCE_NUM_THREADS" not in cfg                      # threads = 0: OpenVINO's default
        one = with_threads(name, 1)                                     # --threads reaches openvino profiles
        assert one.threads == 1 and ovb.compile_config(one, precision)["INFERENCE_NUM_THREADS"] == 1


@pytest.mark.parametrize("data, key", [
    ({"name": "x", "backend": "onnxruntime", "precision": "bf16"}, "precision"),
    ({"name": "x", "backend": "tensorrt", "precision": "bf16"}, "precision"),
    ({"name": "x", "backend": "openvino", "precision": "bf8"}, "precision"),
    ({"name": "x", "backend": "openvino", "threads": -1}, "threads"),
])
def test_bad_openvino_profiles_name_the_key(data, key):
    with pytest.raises(ValidationError, match=key):
        parse_profile(data, "bad.toml")


def test_device_facts():
    f = ovb.device_facts()
    assert f["backend"] == "openvino" and f["openvino"] and f["machine"]
    assert ovb.fact_mismatches(f, f) == [] and ovb.fact_mismatches({**f, "openvino": "0.1"}, f)
