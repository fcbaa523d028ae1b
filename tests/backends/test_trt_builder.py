"""The TensorRT build path against a recording fake ``tensorrt`` module (no GPU here):
strongly typed network, profile -> optimization profile shapes, workspace, optimization
level, REFIT, DLA, timing cache load/save, parser errors, atomic engine + sidecar."""

import enum
import json
import types
from pathlib import Path

import pytest
import torch
from graph_fixtures import export_tiny_graph

from dymu_rt.backends.devices import parse_profile
from dymu_rt.backends.tensorrt import builder as B
from dymu_rt.core.errors import BundleError, ValidationError

torch.set_num_threads(1)

FACTS = {"backend": "tensorrt", "tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}


def trt_profile(**kw):
    base = {"name": "orin-test", "backend": "tensorrt", "precision": "fp32",
            "input": {"batch_min": 1, "batch_opt": 2, "batch_max": 4}, "memory": {"workspace_mb": 256},
            "tensorrt": {"builder_optimization_level": 4, "refittable": True}}
    for k, v in kw.items():
        section = {"shape": "input", "batch_min": "input", "batch_opt": "input", "batch_max": "input", "workspace_mb": "memory",
                   "dla_core": "tensorrt", "gpu_fallback": "tensorrt", "refittable": "tensorrt",
                   "builder_optimization_level": "tensorrt"}.get(k)
        (base.setdefault(section, {}) if section else base)[k] = v
    return parse_profile(base, "test")


def make_fake_trt(strongly_typed: bool = True, parse_ok: bool = True, build_ok: bool = True,
                  input_shape=(-1, 3, 32, 32)):
    """A stand-in for the ``tensorrt`` module that records every call in ``trt.calls``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    calls = trt.calls = []
    rec = lambda *a: calls.append(a)  # noqa: E731

    class Logger:
        WARNING = "warning"

        def __init__(self, level):
            rec("Logger", level)

    members = {"STRONGLY_TYPED": 1} if strongly_typed else {"PREVIEW": 3}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", members)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(REFIT="REFIT", GPU_FALLBACK="GPU_FALLBACK")
    trt.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")
    trt.Logger = Logger

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b"+timing"

    class Config:
        def __init__(self):
            self.flags, self.cache = [], None

        def __setattr__(self, k, v):
            if k not in ("flags", "cache"):
                rec("config." + k, v)
            object.__setattr__(self, k, v)

        def set_memory_pool_limit(self, pool, size):
            rec("set_memory_pool_limit", pool, size)

        def add_optimization_profile(self, p):
            rec("add_optimization_profile", dict(p.shapes))

        def set_flag(self, f):
            self.flags.append(f)
            rec("set_flag", f)

        def create_timing_cache(self, data):
            rec("create_timing_cache", bytes(data))
            return Cache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            object.__setattr__(self, "cache", cache)
            rec("set_timing_cache", ignore_mismatch)

        def get_timing_cache(self):
            return self.cache

    class OptProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return types.SimpleNamespace(name="image", shape=input_shape)

    class Builder:
        def __init__(self, logger):
            rec("Builder")

        def create_network(self, flags):
            rec("create_network", flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return OptProfile()

        def build_serialized_network(self, network, config):
            rec("build_serialized_network")
            return b"ENGINE-BYTES" if build_ok else None

    class ParserError:
        def node(self):
            return 7

        def node_operator(self):
            return "FancyOp"

        def node_name(self):
            return "/head/fancy"

        def desc(self):
            return "no importer registered for op FancyOp"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            rec("OnnxParser")

        def parse_from_file(self, path):
            rec("parse_from_file", path)
            return parse_ok

        def get_error(self, i):
            return ParserError()

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return export_tiny_graph(tmp_path_factory.mktemp("trt") / "t00.onnx")


def names(trt):
    return [c[0] for c in trt.calls]


def test_build_sequence_flags_shapes_pool_and_sidecar(graph, tmp_path):
    trt = make_fake_trt()
    engine = tmp_path / "engines" / "tensorrt" / "orin-test" / "t00.engine"
    cache = B.timing_cache_path(engine.parent.parent, FACTS)
    rec = B.build_engine(graph, engine, trt_profile(), FACTS, cache, "fp32", trt=trt)
    seq = [n for n in names(trt) if n in ("Builder", "create_network", "OnnxParser", "parse_from_file",
                                           "set_memory_pool_limit", "add_optimization_profile",
                                           "create_timing_cache", "build_serialized_network")]
    assert seq == ["Builder", "create_network", "OnnxParser", "parse_from_file", "set_memory_pool_limit",
                   "add_optimization_profile", "create_timing_cache", "build_serialized_network"]
    calls = {c[0]: c[1:] for c in trt.calls}
    assert calls["create_network"] == (1 << 1,)                       # STRONGLY_TYPED
    assert calls["set_memory_pool_limit"] == ("WORKSPACE", 256 << 20)
    assert calls["add_optimization_profile"] == ({"image": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))},)
    assert calls["config.builder_optimization_level"] == (4,)
    assert ("set_flag", "REFIT") in trt.calls and ("set_flag", "GPU_FALLBACK") not in trt.calls
    assert "config.default_device_type" not in calls
    assert engine.read_bytes() == b"ENGINE-BYTES"
    side = json.loads((engine.parent / "t00.engine.json").read_text())
    assert side == rec
    assert {k: side[k] for k in ("tensorrt", "gpu", "compute_capability")} == \
        {"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}
    assert side["precision"] == "fp32" and side["refittable"] is True and side["profile"]["name"] == "orin-test"
    assert cache.name == "timing_orin-nvgpu_sm87_trt10.3.0.cache" and cache.parent == engine.parent.parent
    assert cache.read_bytes() == b"+timing"
    assert not [p for p in engine.parent.iterdir() if p.name.startswith(".")]   # no temp files left


def test_timing_cache_is_loaded_and_grown_across_builds(graph, tmp_path):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"earlier")
    trt = make_fake_trt()
    B.build_engine(graph, tmp_path / "a.engine", trt_profile(), FACTS, cache, trt=trt)
    assert ("create_timing_cache", b"earlier") in trt.calls and ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == b"earlier+timing"


def test_non_refittable_and_dla_profiles(graph, tmp_path):
    trt = make_fake_trt()
    dla = trt_profile(refittable=False, dla_core=1, precision="fp16", batch_min=2, batch_opt=2, batch_max=2)
    B.build_engine(graph, tmp_path / "a.engine", dla, FACTS, trt=trt)
    calls = {c[0]: c[1:] for c in trt.calls}
    assert ("set_flag", "REFIT") not in trt.calls
    assert calls["config.default_device_type"] == ("DLA",) and calls["config.DLA_core"] == (1,)
    assert ("set_flag", "GPU_FALLBACK") in trt.calls


def test_tensorrt_11_without_strongly_typed_flag_uses_default_network(graph, tmp_path):
    trt = make_fake_trt(strongly_typed=False)
    B.build_engine(graph, tmp_path / "a.engine", trt_profile(), FACTS, trt=trt)
    assert ("create_network", 0) in trt.calls


def test_parser_error_is_one_line_and_writes_nothing(graph, tmp_path):
    trt = make_fake_trt(parse_ok=False)
    with pytest.raises(BundleError) as e:
        B.build_engine(graph, tmp_path / "a.engine", trt_profile(), FACTS, tmp_path / "t.cache", trt=trt)
    msg = str(e.value)
    assert "\n" not in msg and "node 7 (FancyOp '/head/fancy'): no importer registered" in msg and str(graph) in msg
    assert list(tmp_path.iterdir()) == []


def test_build_failure_writes_nothing(graph, tmp_path):
    trt = make_fake_trt(build_ok=False)
    with pytest.raises(BundleError, match="workspace_mb"):
        B.build_engine(graph, tmp_path / "a.engine", trt_profile(), FACTS, trt=trt)
    assert list(tmp_path.iterdir()) == []


def test_profile_shapes_rules():
    p = trt_profile(batch_min=2, batch_opt=4, batch_max=8)
    assert B.profile_shapes((-1, 3, 64, 48), p) == ((2, 3, 64, 48), (4, 3, 64, 48), (8, 3, 64, 48))
    with pytest.raises(ValidationError, match="fixed batch 1"):
        B.profile_shapes((1, 3, 64, 48), p)
    assert B.profile_shapes((2, 3, 8, 8), trt_profile(batch_min=2, batch_opt=2, batch_max=2))[2] == (2, 3, 8, 8)
    with pytest.raises(ValidationError, match=r"dynamic dimensions \[2, 3\]"):
        B.profile_shapes((-1, 3, -1, -1), p)
    import dataclasses

    # parse_profile refuses a dynamic DLA range; a profile made in code is still caught here.
    dla = dataclasses.replace(trt_profile(), dla_core=0, precision="fp16")
    with pytest.raises(ValidationError, match="DLA needs batch_min == batch_opt == batch_max"):
        B.profile_shapes((-1, 3, 8, 8), dla)


@pytest.mark.parametrize("kw, key, text", [
    ({"dla_core": 0, "precision": "fp16"}, "input.batch_max", "DLA has no dynamic shapes"),
    ({"dla_core": 0, "batch_opt": 1, "batch_max": 1}, "precision", "needs fp16 or int8"),
    ({"shape": [1, 64, 64]}, "input.shape", r"\[3, height, width\]"),
    ({"shape": [3, 64]}, "input.shape", r"\[3, height, width\]"),
    ({"shape": [3, 0, 64]}, "input.shape", "positive"),
    ({"name": "../../evil"}, "name", r"\^\[A-Za-z0-9._-\]\+\$"),
    ({"name": ".."}, "name", "not be '.' or '..'"),
])
def test_profile_validation_names_the_key(kw, key, text):
    with pytest.raises(ValidationError) as e:
        trt_profile(**kw)
    msg = str(e.value)
    assert f"key '{key}'" in msg and "\n" not in msg
    import re

    assert re.search(text, msg), msg


def test_dla_profile_with_fixed_batch_and_fp16_is_accepted_and_shipped_ones_are_valid():
    from dymu_rt.backends.devices import list_profiles

    p = trt_profile(dla_core=0, precision="int8", batch_min=4, batch_opt=4, batch_max=4, shape=[3, 48, 64])
    assert p.dla_core == 0 and p.shape == (3, 48, 64)
    profs = {q.name: q for q in list_profiles()}
    agx = profs["jetson-agx-orin"]
    assert agx.dla_core == 0 and agx.batch_min == agx.batch_opt == agx.batch_max
    for q in profs.values():
        if q.backend == "tensorrt":
            assert q.shape is None and q.device not in ("", "cpu")   # input size from the bundle


def test_profile_device_is_matched_against_the_gpu_name():
    from dymu_rt.backends.tensorrt.facts import check_device, device_matches

    assert device_matches("Orin", "Orin (nvgpu)") and device_matches("rtx", "NVIDIA GeForce RTX 4090")
    assert device_matches("H100|H200", "NVIDIA H200") and not device_matches("H100|A100", "NVIDIA L4")
    assert device_matches("cpu", "anything") and device_matches("", "anything")
    prof = trt_profile(device="Orin")
    check_device(prof, FACTS)
    with pytest.raises(ValidationError) as e:
        check_device(prof, {**FACTS, "gpu": "NVIDIA H100 80GB HBM3"})
    assert str(e.value) == ("profile 'orin-test' is for device 'Orin' but this GPU is 'NVIDIA H100 80GB HBM3'; "
                            "pick a profile for this GPU (`dymu-rt profiles`) or set 'device' in a copy of the profile")


def test_prepare_graph_per_precision(graph, tmp_path):
    import onnx

    from dymu_rt.backends.precision import graph_precision

    assert B.prepare_graph(graph, "fp32", tmp_path, "t00") == graph
    fp16 = B.prepare_graph(graph, "fp16", tmp_path, "t00")
    assert fp16 == tmp_path / "t00.fp16.onnx" and graph_precision(onnx.load(str(fp16))) == "fp16"
    assert B.prepare_graph(fp16, "fp16", tmp_path, "t00") == fp16
    with pytest.raises(ValidationError, match="is fp16"):
        B.prepare_graph(fp16, "int8", tmp_path, "t00")
    with pytest.raises(BundleError, match="not inside a bundle"):
        B.prepare_graph(graph, "int8", tmp_path, "t00")


def test_prepare_graph_int8_derives_the_qdq_graph_from_the_bundle_ranges(tmp_path):
    from graph_fixtures import make_bundle, write_images

    from dymu_rt.compile.calibrate import calibrate_bundle

    bundle = make_bundle(tmp_path / "b", n_topologies=1)
    g = bundle / "graphs" / "0000000000000000.onnx"
    with pytest.raises(BundleError, match="dymu-rt calibrate"):
        B.prepare_graph(g, "int8", tmp_path, "0000000000000000")
    calibrate_bundle(bundle, images=write_images(tmp_path / "img", 3), progress=False)
    qdq = B.prepare_graph(g, "int8", tmp_path / "work", "0000000000000000")
    # store once: derived next to the engines from the stored ranges, not read from the bundle
    assert qdq == tmp_path / "work" / "0000000000000000.int8.onnx"
    import onnx

    model = onnx.load(str(qdq))
    zps = [i for i in model.graph.initializer if i.name.endswith("_zero_point")]
    assert zps and all(z.data_type == onnx.TensorProto.INT8 for z in zps)     # symmetric int8: TensorRT's form


def test_network_flags_and_logger_are_shared():
    trt = make_fake_trt()
    assert B.network_flags(trt) == 2
    assert B.get_logger(trt) is B.get_logger(trt)



# -- `dymu-rt build --backend tensorrt`: engines per topology, journaled, recorded ----------------

class FakeTrtBuildBackend:
    """TensorRTBackend's compile contract without TensorRT: engine + sidecar + fp16 graph."""

    name = "tensorrt"
    binds_in_place = True

    def __init__(self, fail_after=None):
        self.compiled, self.fail_after = [], fail_after

    def device_facts(self):
        return dict(FACTS)

    def compile(self, request, out_dir):
        from dymu_rt.backends.tensorrt.facts import write_sidecar

        graph, topology = request.graph, request.topology
        from dymu_rt.core.io import atomic_write_bytes, sha256_file

        if self.fail_after is not None and len(self.compiled) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        out_dir = Path(out_dir)
        (out_dir / f"{topology}.fp16.onnx").write_bytes(b"converted")
        engine = out_dir / f"{topology}.engine"
        atomic_write_bytes(engine, b"ENGINE " + Path(graph).read_bytes()[:64])
        write_sidecar(engine, {**FACTS, "graph": f"{topology}.fp16.onnx"})
        (out_dir.parent / "timing_orin-nvgpu_sm87_trt10.3.0.cache").write_bytes(b"timing")
        self.compiled.append(topology)
        return {"file": engine.name, "sha256": sha256_file(engine), "sidecar": engine.name + ".json"}


@pytest.fixture
def trt_build(monkeypatch, tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))
    from run_fixture import make_tiny_run

    import dymu_rt.backends.registry as registry
    import dymu_rt.backends.tensorrt as trt_pkg

    run = make_tiny_run(tmp_path_factory.mktemp("run") / "run")
    profile = tmp_path_factory.mktemp("prof") / "orin-test.toml"
    profile.write_text('name = "orin-test"\nbackend = "tensorrt"\ndevice = "Orin"\nprecision = "fp16"\n'
                       '[input]\nshape = [3, 32, 32]\nbatch_min = 1\nbatch_opt = 1\nbatch_max = 2\n')
    import dymu_rt.compile.bundle_writer as writer_mod      # the engines step (compile_engines) lives there

    holder = {"backend": FakeTrtBuildBackend()}
    monkeypatch.setattr(trt_pkg.TensorRTBackend, "check_available", classmethod(lambda cls: None))
    real = registry.get_backend
    monkeypatch.setattr(writer_mod, "get_backend",
                        lambda name, **kw: holder["backend"] if name == "tensorrt" else real(name, **kw))
    return run, str(profile), holder


def test_build_tensorrt_compiles_one_engine_per_topology_and_records_them(trt_build, tmp_path):
    from dymu_rt.bundle import layout as CB
    from dymu_rt.methods import build_bundle

    run, profile, holder = trt_build
    out = tmp_path / "b"
    summary = build_bundle(run, out, step="0.5", backend="tensorrt", profile=profile, progress=False)
    m = CB.verify_bundle(out).to_dict()                               # engine files hashed like the rest
    rec = m["engines"]["tensorrt"]["orin-test"]
    assert set(rec["files"]) == set(m["topologies"]) == set(holder["backend"].compiled)
    assert {k: rec[k] for k in ("tensorrt", "gpu", "compute_capability")} == \
        {k: FACTS[k] for k in ("tensorrt", "gpu", "compute_capability")}
    assert rec["precision"] == "fp16" and summary["engines_built"] == len(m["topologies"])
    for tid, f in rec["files"].items():
        assert f["file"] == f"engines/tensorrt/orin-test/{tid}.engine"
        assert (out / f"{f['file']}.json").is_file() and (out / f"engines/tensorrt/orin-test/{tid}.fp16.onnx").is_file()
    assert (out / "engines/tensorrt/timing_orin-nvgpu_sm87_trt10.3.0.cache").is_file()
    assert not list(out.rglob("*.tmp")) and not (out / CB.JOURNAL).exists()
    again = build_bundle(run, out, step="0.5", backend="tensorrt", profile=profile, progress=False)
    assert again["noop"] and len(holder["backend"].compiled) == len(m["topologies"])


def test_build_tensorrt_killed_mid_engines_resumes_and_other_request_clears_stale_engines(trt_build, tmp_path):
    from dymu_rt.bundle import layout as CB
    from dymu_rt.methods import build_bundle

    run, profile, holder = trt_build
    out = tmp_path / "b"
    holder["backend"] = FakeTrtBuildBackend(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        build_bundle(run, out, step="0.5", backend="tensorrt", profile=profile, progress=False)
    assert not (out / "manifest.json").exists()
    (out / "engines" / "tensorrt" / "orin-test" / ".x.engine.abc123.tmp").write_bytes(b"partial")
    holder["backend"] = FakeTrtBuildBackend()
    build_bundle(run, out, step="0.5", backend="tensorrt", profile=profile, progress=False)
    m = CB.verify_bundle(out).to_dict()
    assert len(holder["backend"].compiled) == len(m["topologies"]) - 1      # the finished one is reused
    assert not list(out.rglob("*.tmp"))
    # Another request (ONNX Runtime, other grid): graphs and engines of the old one are stale.
    build_bundle(run, out, step="1", backend="onnxruntime", progress=False)
    m2 = CB.verify_bundle(out).to_dict()
    assert m2["engines"] == {}
    left = [p.relative_to(out).as_posix() for p in (out / "engines").rglob("*") if p.is_file()]
    assert left == ["engines/tensorrt/timing_orin-nvgpu_sm87_trt10.3.0.cache"]   # device cache kept


def test_build_tensorrt_needs_a_matching_profile(trt_build, tmp_path):
    from dymu_rt.methods import build_bundle

    run, profile, _ = trt_build
    with pytest.raises(ValidationError, match="--backend tensorrt needs --profile"):
        build_bundle(run, tmp_path / "b", backend="tensorrt", progress=False)
    # A profile pinned to another input size than the run's is refused before anything is written.
    import importlib.resources

    text = (importlib.resources.files("dymu_rt.profiles") / "jetson-orin-nano.toml").read_text().replace("# shape = [3, 64, 64]", "shape = [3, 64, 64]", 1)
    assert "\nshape = [3, 64, 64]" in text
    pinned = tmp_path / "orin-64.toml"
    pinned.write_text(text.replace('name = "jetson-orin-nano"', 'name = "orin-64"'))
    with pytest.raises(ValidationError, match="key 'input.shape' = \\[3, 64, 64\\] but run"):
        build_bundle(run, tmp_path / "b", backend="tensorrt", profile=str(pinned), progress=False)
    assert not (tmp_path / "b").exists()
