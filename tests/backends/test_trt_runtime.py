"""TensorRT runtime logic without a GPU: unavailable backend errors, refusal of engines built
for another device, the shared scratch buffer, refit checks and the run sequence (fakes);
plus a real end-to-end test that runs only where TensorRT and a GPU exist."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dymu_rt.backends.base import Backend, Engine, EngineRequest
from dymu_rt.backends.tensorrt import engine as E
from dymu_rt.backends.tensorrt import facts as F
from dymu_rt.backends.tensorrt.refit import EngineRefitter
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError

torch.set_num_threads(1)

FACTS = {"backend": "tensorrt", "tensorrt": "10.3.0", "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}


def _has_gpu_tensorrt() -> bool:
    try:
        F.check_available()
        return True
    except BackendUnavailable:
        return False


# -- availability ---------------------------------------------------------------------------------

def test_missing_tensorrt_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)          # import tensorrt -> ImportError
    from dymu_rt.backends.tensorrt import TensorRTBackend, check_available

    for call in (TensorRTBackend, check_available):
        with pytest.raises(BackendUnavailable) as e:
            call()
        assert str(e.value) == ("TensorRT backend unavailable: python package 'tensorrt' is not installed "
                                "(pip install 'dymu-rt[tensorrt]' on a machine with an NVIDIA GPU)")
    from dymu_rt.backends.registry import get_backend

    with pytest.raises(BackendUnavailable, match="'tensorrt' is not installed"):
        get_backend("tensorrt")


def test_missing_pycuda_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    from dymu_rt.backends.tensorrt import cuda

    monkeypatch.setattr(cuda, "_STATE", {})
    with pytest.raises(BackendUnavailable, match="'pycuda' is not installed"):
        F.check_available()


def test_build_command_checks_tensorrt_before_writing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    from dymu_rt.compile.build import check_backend

    with pytest.raises(BackendUnavailable, match="TensorRT backend unavailable"):
        check_backend("tensorrt", None)


# -- facts ----------------------------------------------------------------------------------------

def test_mismatched_engine_is_refused_with_rebuild_hint(tmp_path):
    engine = tmp_path / "t00.engine"
    F.write_sidecar(engine, {**FACTS, "precision": "fp16"})
    rec = F.read_sidecar(engine)
    F.check_facts(rec, dict(FACTS), engine)                      # same machine: fine
    other = {**FACTS, "tensorrt": "11.1.0", "compute_capability": "9.0", "gpu": "NVIDIA H100"}
    with pytest.raises(BundleError) as e:
        F.check_facts(rec, other, engine)
    msg = str(e.value)
    assert "\n" not in msg and "tensorrt '10.3.0' (engine) != '11.1.0' (this machine)" in msg
    assert "compute_capability '8.7' (engine) != '9.0'" in msg and "gpu 'Orin (nvgpu)'" in msg
    assert "rebuild" in msg and "dymu-rt build --backend tensorrt" in msg


def test_missing_or_incomplete_sidecar_is_refused(tmp_path):
    with pytest.raises(BundleError, match="has no sidecar"):
        F.read_sidecar(tmp_path / "x.engine")
    (tmp_path / "y.engine.json").write_text('{"tensorrt": "10.3.0"}')
    with pytest.raises(BundleError, match=r"lacks \['gpu', 'compute_capability'\]"):
        F.read_sidecar(tmp_path / "y.engine")
    (tmp_path / "z.engine.json").write_text("{nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        F.read_sidecar(tmp_path / "z.engine")


# -- shared scratch -------------------------------------------------------------------------------

class FakeBuffer:
    live = []

    def __init__(self, nbytes):
        self.nbytes, self.ptr, self.freed = nbytes, 0x1000 + len(FakeBuffer.live) * 0x100000, False
        FakeBuffer.live.append(self)

    def free(self):
        self.freed = True


class FakeContext:
    def __init__(self):
        self.memory = None

    def set_device_memory(self, ptr, size):
        self.memory = (ptr, size)


def test_one_scratch_buffer_grows_and_repoints_every_context():
    scratch = E.SharedScratch(FakeBuffer)
    a, b, c = FakeContext(), FakeContext(), FakeContext()
    scratch.attach(a, 100)
    first = scratch.buffer
    scratch.attach(b, 50)                                    # fits: same buffer
    assert scratch.buffer is first and a.memory == b.memory == (first.ptr, 100)
    scratch.attach(c, 300)                                   # grows: everyone moves, old freed
    assert first.freed and scratch.nbytes == 300
    assert a.memory == b.memory == c.memory == (scratch.buffer.ptr, 300)
    for ctx in (a, b):
        scratch.detach(ctx)
    assert not scratch.buffer.freed
    last = scratch.buffer
    scratch.detach(c)
    assert last.freed and scratch.buffer is None


def test_device_memory_size_prefers_v2():
    assert E.device_memory_size(types.SimpleNamespace(device_memory_size_v2=7, device_memory_size=3)) == 7
    assert E.device_memory_size(types.SimpleNamespace(device_memory_size=3)) == 3


# -- refit ----------------------------------------------------------------------------------------

class FakeRefitter:
    def __init__(self, engine, logger, refittable=("w", "b", "q_scale"), missing=()):
        self.set, self.refittable, self.missing, self.calls = {}, list(refittable), list(missing), []

    def get_all_weights(self):
        return self.refittable

    def set_named_weights(self, name, weights):
        self.set[name] = weights
        return weights.ok

    def get_missing_weights(self):
        return self.missing

    def refit_cuda_engine_async(self, stream):
        self.calls.append(("async", stream))
        return True

    def refit_cuda_engine(self):
        self.calls.append(("sync",))
        return True


def fake_trt_for_refit(**kw):
    holder = {}

    def make(engine, logger):
        holder["r"] = FakeRefitter(engine, logger, **kw)
        return holder["r"]

    class Weights:
        def __init__(self, arr):
            self.arr, self.ok = arr, arr.dtype != np.float64     # TensorRT rejects a wrong dtype
    return types.SimpleNamespace(Refitter=make, Weights=Weights), holder


class FakeStream:
    handle = 1234

    def __init__(self):
        self.synced = 0

    def synchronize(self):
        self.synced += 1


def test_refit_sends_weights_and_uses_async_refit():
    trt, h = fake_trt_for_refit()
    stream = FakeStream()
    r = EngineRefitter(trt, types.SimpleNamespace(refittable=True), None, "engine t00")
    sent = r.refit({"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}, stream)
    assert sent == ["w", "b"] and set(h["r"].set) == {"w", "b"}
    assert h["r"].calls == [("async", 1234)] and stream.synced == 1


def test_refit_missing_weight_fails_loudly_naming_it():
    trt, _ = fake_trt_for_refit(missing=["node1_0.conv1.conv.bias"])
    r = EngineRefitter(trt, types.SimpleNamespace(refittable=True), None, "engine t00")
    with pytest.raises(BundleError, match=r"missing weights \['node1_0.conv1.conv.bias'\]"):
        r.refit({"w": np.ones(2, np.float32)})


def test_refit_rejects_unknown_changed_names_and_skips_unchanged_baked_ones():
    trt, h = fake_trt_for_refit()
    baked = {"q_quantized": np.array([1, -2], np.int8)}
    r = EngineRefitter(trt, types.SimpleNamespace(refittable=True), None, "engine t00", baked)
    r.refit({"q_quantized": np.array([1, -2], np.int8), "q_scale": np.ones(2, np.float32)})
    assert set(h["r"].set) == {"q_scale"} and h["r"].calls == [("sync",)]
    with pytest.raises(BundleError, match="weight 'q_quantized' is not refittable"):
        r.refit({"q_quantized": np.array([-1, 2], np.int8)})
    with pytest.raises(BundleError, match="refit rejected weight 'w'"):
        r.refit({"w": np.ones(2, np.float64)})


def test_non_refittable_engine_is_refused():
    trt, _ = fake_trt_for_refit()
    with pytest.raises(BundleError, match="refittable = true"):
        EngineRefitter(trt, types.SimpleNamespace(refittable=False), None, "engine t00")


# -- the run sequence (fake engine/context/cuda) -------------------------------------------------

class Memory:
    """Fake device memory: ptr -> numpy byte array."""

    def __init__(self):
        self.blocks, self.next = {}, 0x10

    def alloc(self, nbytes):
        mem, ptr = self, self.next
        self.next += 0x1000000
        self.blocks[ptr] = np.zeros(nbytes, np.uint8)

        class Buf:
            def __init__(self):
                self.nbytes, self.ptr = nbytes, ptr

            def free(self):
                mem.blocks.pop(ptr, None)
        return Buf()


def make_fake_run(mem):
    calls = []

    class Ctx:
        def __init__(self):
            self.shapes, self.addr = {}, {}

        def set_device_memory(self, ptr, size):
            calls.append(("set_device_memory", size))

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            n = self.shapes["image"][0]
            return (n, 2, 4, 4) if name == "semseg" else (n, 1, 4, 4)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            calls.append(("execute_async_v3", stream, sorted(self.addr)))
            x = mem.blocks[self.addr["image"]][: int(np.prod(self.shapes["image"])) * 4].view(np.float32)
            for out, c in (("semseg", 2), ("depth", 1)):
                y = np.full((self.shapes["image"][0], c, 4, 4), x.sum(), np.float32).ravel()
                mem.blocks[self.addr[out]][: y.nbytes] = y.view(np.uint8)
            return True

    class Eng:
        num_io_tensors = 3
        device_memory_size_v2 = 4096
        refittable = True

        def get_tensor_name(self, i):
            return ["image", "semseg", "depth"][i]

        def get_tensor_mode(self, name):
            return "IN" if name == "image" else "OUT"

        def get_tensor_dtype(self, name):
            return "float"

        def get_tensor_profile_shape(self, name, profile):
            return (1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4)

        def create_execution_context(self, strategy):
            calls.append(("create_execution_context", strategy))
            return Ctx()

    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="IN"), nptype=lambda t: np.float32,
                                ExecutionContextAllocationStrategy=types.SimpleNamespace(USER_MANAGED="USER"))

    class Stream:
        handle = 99

        def htod(self, dst, host):
            b = np.ascontiguousarray(host).view(np.uint8).ravel()
            mem.blocks[dst.ptr][: b.nbytes] = b

        def dtoh(self, host, src):
            host.view(np.uint8).ravel()[:] = mem.blocks[src.ptr][: host.nbytes]

        def synchronize(self):
            calls.append(("synchronize",))
            self.synced = True

        def record_event(self):
            # A recorded CUDA event: GPU timestamps that become readable after synchronize.
            calls.append(("record_event",))
            stream, stamp = self, 2.5 * sum(c[0] == "record_event" for c in calls)

            class Event:
                def ms_since(self, start):
                    assert stream.synced, "event read before the stream was synchronized"
                    return stamp - start.stamp
            ev = Event()
            ev.stamp = stamp
            self.synced = False
            return ev

    cuda = types.SimpleNamespace(DeviceBuffer=mem.alloc)
    return trt, Eng(), Stream(), cuda, calls


def test_run_sets_shapes_addresses_and_executes_on_the_stream():
    mem = Memory()
    trt, eng, stream, cuda, calls = make_fake_run(mem)
    scratch = E.SharedScratch(mem.alloc)
    engine = E.TensorRTEngine("t00", trt, eng, scratch, stream, cuda, nbytes=1000)
    assert ("create_execution_context", "USER") in calls and ("set_device_memory", 4096) in calls
    x = np.ones((3, 3, 4, 4), np.float32)
    out = engine.run(x)
    assert out["semseg"].shape == (3, 2, 4, 4) and out["depth"].shape == (3, 1, 4, 4)
    assert np.all(out["semseg"] == x.sum())
    assert ("execute_async_v3", 99, ["depth", "image", "semseg"]) in calls and calls[-1] == ("synchronize",)
    # GPU compute time comes from the events around execute_async_v3, not from the host clock
    i = calls.index(("execute_async_v3", 99, ["depth", "image", "semseg"]))
    assert calls[i - 1] == ("record_event",) and calls[i + 1] == ("record_event",)
    assert engine.last_timing["gpu_compute_ms"] == 2.5 and engine.last_timing["host_ms"] > 0
    assert engine.memory_bytes() >= 1000 + 4096 + x.nbytes
    with pytest.raises(ValidationError, match=r"batch in 1\.\.4"):
        engine.run(np.ones((5, 3, 4, 4), np.float32))
    engine.close()
    assert scratch.buffer is None


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu_tensorrt(), reason="needs the tensorrt and pycuda packages and an NVIDIA GPU")
def test_real_engine_build_run_refit_matches_onnxruntime(tmp_path):
    import onnxruntime as ort
    from graph_fixtures import export_tiny_graph
    from test_trt_builder import trt_profile

    from dymu_rt.backends.precision import GraphWeights
    from dymu_rt.backends.tensorrt import TensorRTBackend

    (tmp_path / "graphs").mkdir()
    graph = export_tiny_graph(tmp_path / "graphs" / "t00.onnx")
    backend = TensorRTBackend()
    rec = backend.compile(EngineRequest(graph, trt_profile(), "t00"), tmp_path / "engines" / "tensorrt" / "p")
    eng = backend.load(EngineRequest(graph, trt_profile(), "t00",
                                     artifact=tmp_path / "engines" / "tensorrt" / "p" / rec["file"],
                                     artifact_sha256=rec["sha256"]))
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    ref = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    out = eng.run(x)
    np.testing.assert_allclose(out["semseg"], ref[0], rtol=1e-2, atol=1e-3)
    w = GraphWeights(graph).initial["node1_0.conv1.conv.weight"]
    eng.bind({"node1_0.conv1.conv.weight": w * 0.5})
    assert not np.allclose(eng.run(x)["semseg"], out["semseg"])
    eng.close()


# -- CUDA context per thread ----------------------------------------------------------------------

def fake_pycuda_driver():
    """A ``pycuda.driver`` stand-in whose context stack is per thread, like CUDA's."""
    import threading

    local = threading.local()
    drv = types.ModuleType("pycuda.driver")
    drv.log = []

    def stack():
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    class Error(Exception):
        pass

    class Ctx:
        def push(self):
            stack().append(self)

    class Context:
        @staticmethod
        def pop():
            stack().pop()

    class Device:
        @staticmethod
        def count():
            return 1

        def __init__(self, i):
            pass

        def retain_primary_context(self):
            return Ctx()

    class Alloc:
        def __init__(self, n):
            self.n = n

        def __int__(self):
            return 0x100

        def free(self):
            drv.log.append(("free", len(stack())))

    def mem_alloc(n):
        if not stack():
            raise Error("invalid device context")        # what CUDA says without a current context
        drv.log.append(("mem_alloc", threading.current_thread().name))
        return Alloc(n)

    drv.Error, drv.Context, drv.Device, drv.mem_alloc = Error, Context, Device, mem_alloc
    drv.init = lambda: None
    drv.depth = lambda: len(stack())
    return drv


def test_cuda_entry_points_push_the_context_in_any_thread(monkeypatch):
    import threading

    from dymu_rt.backends.tensorrt import cuda

    drv = fake_pycuda_driver()
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setattr(cuda, "_STATE", {})
    cuda._driver()
    assert drv.depth() == 0                                 # initializing leaves nothing pushed
    bufs, errors = [], []

    def worker():
        try:
            bufs.append(cuda.DeviceBuffer(64))
            assert drv.depth() == 0                         # popped again
            with cuda.activate():
                with cuda.activate():                       # nests
                    assert drv.depth() == 2
            assert drv.depth() == 0
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(n for op, n in drv.log if op == "mem_alloc") == ["w0", "w1", "w2"]
    bufs[0].free()
    assert drv.log[-1] == ("free", 1)                       # freed with the context current
    bufs[0].free()                                          # idempotent
    assert drv.log[-1] == ("free", 1) and drv.depth() == 0


def test_engine_entry_points_run_with_the_context_current():
    import contextlib

    mem = Memory()
    trt, eng, stream, _, calls = make_fake_run(mem)
    depth = {"now": 0, "max_seen_in_execute": 0}

    @contextlib.contextmanager
    def activate():
        depth["now"] += 1
        try:
            yield
        finally:
            depth["now"] -= 1

    cuda = types.SimpleNamespace(DeviceBuffer=mem.alloc, activate=activate)
    orig = stream.synchronize

    def sync():
        assert depth["now"] >= 1, "stream used without the CUDA context current"
        orig()
    stream.synchronize = sync
    engine = E.TensorRTEngine("t00", trt, eng, E.SharedScratch(mem.alloc), stream, cuda, nbytes=10)
    engine.run(np.ones((1, 3, 4, 4), np.float32))
    engine.close()
    engine.close()                                          # idempotent
    assert depth["now"] == 0
    with pytest.raises(RuntimeError, match="is closed"):
        engine.run(np.ones((1, 3, 4, 4), np.float32))


# -- TensorRTBackend.load: resolved path, hash, device, no leaked temp folder --------------------

def _backend_with_fakes(mem, eng):
    import contextlib

    be = object.__new__(E.TensorRTBackend)
    trt, _, stream, cuda, _ = make_fake_run(mem)
    cuda.activate = contextlib.nullcontext
    be._trt, be._facts, be._cuda, be._logger, be._stream = trt, dict(FACTS), cuda, None, stream
    be._runtime = types.SimpleNamespace(deserialize_cuda_engine=lambda data: eng)
    be._scratch = E.SharedScratch(mem.alloc)
    return be


def test_load_checks_hash_and_facts(tmp_path):
    from graph_fixtures import export_tiny_graph
    from test_trt_builder import trt_profile

    from dymu_rt.core.io import sha256_file

    mem = Memory()
    _, eng, _, _, _ = make_fake_run(mem)
    be = _backend_with_fakes(mem, eng)
    (tmp_path / "graphs").mkdir()
    graph = export_tiny_graph(tmp_path / "graphs" / "t00.onnx")
    engine_file = tmp_path / "engines" / "tensorrt" / "p" / "t00.engine"
    engine_file.parent.mkdir(parents=True)
    engine_file.write_bytes(b"ENGINE")
    F.write_sidecar(engine_file, {**FACTS, "graph": "missing.onnx", "precision": "fp32"})
    prof = trt_profile(device="Orin")
    with pytest.raises(BundleError, match="is missing"):
        be.load(EngineRequest(graph, prof, "t00", artifact=tmp_path / "engines/tensorrt/p/nope.engine"))
    with pytest.raises(BundleError, match="is corrupt"):
        be.load(EngineRequest(graph, prof, "t00", artifact=engine_file, artifact_sha256="0" * 64))
    loaded = be.load(EngineRequest(graph, prof, "t00", artifact=engine_file, artifact_sha256=sha256_file(engine_file)))
    assert loaded.memory_bytes() >= len(b"ENGINE")
    with pytest.raises(ValidationError, match="is for device 'H100'"):
        be.load(EngineRequest(graph, trt_profile(device="H100"), "t00", artifact=engine_file))
    F.write_sidecar(engine_file, {**FACTS, "tensorrt": "11.0.0"})
    with pytest.raises(BundleError, match="built for another device or TensorRT"):
        be.load(EngineRequest(graph, prof, "t00", artifact=engine_file))


def test_load_without_artifact_builds_in_a_temporary_folder_that_is_removed(tmp_path, monkeypatch):
    from graph_fixtures import export_tiny_graph
    from test_trt_builder import trt_profile

    from dymu_rt.backends.tensorrt import builder

    mem = Memory()
    _, eng, _, _, _ = make_fake_run(mem)
    be = _backend_with_fakes(mem, eng)
    graph = export_tiny_graph(tmp_path / "t00.onnx")
    seen = {}

    def fake_build(src, profile, timing_cache, trt):
        seen.update(src=Path(src), cache=timing_cache, exists=Path(src).is_file())
        return b"ENGINE"
    monkeypatch.setattr(builder, "build_serialized", fake_build)
    loaded = be.load(EngineRequest(graph, trt_profile(precision="fp16"), "t00", timing_cache=tmp_path / "t.cache"))
    assert seen["exists"] and seen["src"].name == "t00.fp16.onnx" and seen["cache"] == tmp_path / "t.cache"
    assert not seen["src"].parent.exists()                  # no leaked mkdtemp folder
    assert loaded._weights.precision == "fp16"


# -- Runtime with a TensorRT-kind backend: resolved path on load, compile-and-record on a miss ----

class _NullEngine(Engine):
    def __init__(self, topology):
        self.topology = topology

    def bind(self, weights):
        pass

    def run(self, images, bound=None):
        return {}

    def memory_bytes(self):
        return 10

    def close(self):
        pass


class RecordingTrtBackend(Backend):
    """Stands in for TensorRTBackend inside the Runtime (same name, compile/load contract)."""

    name = "tensorrt"
    binds_in_place = True

    def __init__(self):
        self.compiled, self.loaded = [], []

    def device_facts(self):
        return dict(FACTS)

    def compile(self, request, out_dir):
        from dymu_rt.core.io import atomic_write_bytes, sha256_file

        target = Path(out_dir) / f"{request.topology}.engine"
        atomic_write_bytes(target, b"ENGINE " + request.topology.encode())
        self.compiled.append(request.topology)
        return {"file": target.name, "sha256": sha256_file(target), "sidecar": target.name + ".json"}

    def load(self, request):
        self.loaded.append({"path": request.artifact, "sha256": request.artifact_sha256})
        return _NullEngine(request.topology)


def _trt_runtime(bundle, backend):
    from test_trt_builder import trt_profile

    from dymu_rt.runtime import Runtime
    from dymu_rt.bundle import sections as RB

    manifest = RB.open_manifest(bundle)
    return Runtime(bundle, manifest, backend, trt_profile(name="orin-test"), cache_engines=True)


def test_runtime_compiles_records_and_then_loads_the_engine_by_path(tmp_path):
    import json

    sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
    from bundle_fixture import write_bundle

    bundle = write_bundle(tmp_path / "bundle")
    be = RecordingTrtBackend()
    rt = _trt_runtime(bundle, be)
    info = rt.set_preference([1, 0, 0], 0)
    tid = info["topology"]
    rel = f"engines/tensorrt/orin-test/{tid}.engine"
    assert be.compiled == [tid]
    assert be.loaded[-1]["path"] == bundle / rel and len(be.loaded[-1]["sha256"]) == 64
    rec = json.loads((bundle / "manifest.json").read_text())["engines"]["tensorrt"]["orin-test"]
    assert rec["files"][tid]["file"] == rel and rec["gpu"] == FACTS["gpu"] and rec["profile"] == "orin-test"
    be2 = RecordingTrtBackend()
    rt2 = _trt_runtime(bundle, be2)                          # reopened: loads, does not build again
    rt2.set_preference([1, 0, 0], 0)
    assert be2.compiled == [] and be2.loaded == [{"path": bundle / rel, "sha256": rec["files"][tid]["sha256"]}]
    assert not list(bundle.rglob("*.tmp"))
