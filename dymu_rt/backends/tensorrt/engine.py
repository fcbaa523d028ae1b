"""Run TensorRT engines: ``TensorRTEngine`` and ``TensorRTBackend`` (``name = "tensorrt"``).

Execution is ``execute_async_v3(stream)`` after ``set_input_shape`` (dynamic batch) and
``set_tensor_address`` for every I/O tensor. Contexts are created with
``ExecutionContextAllocationStrategy.USER_MANAGED`` and all point into **one** scratch
buffer (:class:`SharedScratch`) sized to the largest ``device_memory_size_v2`` of the
cached engines: they run one at a time on one stream, so they never need their scratch at
the same time (DESIGN.md §6). Buffers come from :mod:`dymu_rt.backends.tensorrt.cuda`.

Thread safety: every entry point (``run``, ``bind``, ``close``, loading) makes the CUDA
context current in the calling thread (:func:`dymu_rt.backends.tensorrt.cuda.activate`).
The engines bind in place (refit) and share one scratch buffer and one stream, so callers
must serialize runs with binds, loads and closes of *any* engine of one backend
(``TensorRTBackend.binds_in_place``; the Runtime does, see ``Runtime._serial_lock``).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dymu_rt.backends.base import Backend, Engine, EngineRequest
from dymu_rt.backends.precision import GraphWeights
from dymu_rt.backends.tensorrt import builder
from dymu_rt.backends.tensorrt import cuda
from dymu_rt.backends.tensorrt.facts import (
    check_available,
    check_device,
    check_facts,
    import_tensorrt,
    read_sidecar,
)
from dymu_rt.backends.tensorrt.refit import EngineRefitter
from dymu_rt.core.errors import BundleError, ValidationError
from dymu_rt.core.io import sha256_bytes, sha256_file


def active(cuda):
    """The CUDA context made current in this thread (``cuda.activate()``), for a block."""
    act = getattr(cuda, "activate", None)
    return act() if act is not None else contextlib.nullcontext()


def device_memory_size(engine) -> int:
    """Scratch bytes an engine's context needs (``device_memory_size_v2``; TensorRT 11 removed
    the v1 attribute, early TensorRT 10 lacks v2)."""
    size = getattr(engine, "device_memory_size_v2", None)
    return int(engine.device_memory_size if size is None else size)


def set_device_memory(context, ptr: int, size: int) -> None:
    """Point a USER_MANAGED context at scratch memory (``set_device_memory`` since 10.1)."""
    if hasattr(context, "set_device_memory"):
        context.set_device_memory(ptr, size)
    else:
        context.device_memory = ptr


def create_context(trt, engine):
    """An execution context that allocates no scratch of its own."""
    strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
    if strategy is not None:
        return engine.create_execution_context(strategy.USER_MANAGED)
    return engine.create_execution_context_without_device_memory()


class SharedScratch:
    """One device scratch buffer shared by the contexts of every cached engine.

    ``alloc(nbytes)`` returns an object with ``ptr``, ``nbytes`` and ``free()`` (a
    :class:`~dymu_rt.backends.tensorrt.cuda.DeviceBuffer` on a GPU). When an engine needing
    more arrives, the buffer grows and every attached context is re-pointed at it.
    """

    def __init__(self, alloc: Callable[[int], Any]) -> None:
        self._alloc = alloc
        self.buffer = None
        self._contexts: dict[int, Any] = {}

    @property
    def nbytes(self) -> int:
        return 0 if self.buffer is None else self.buffer.nbytes

    def attach(self, context, need: int) -> None:
        """Give ``context`` (needing ``need`` bytes) the shared buffer, growing it if needed."""
        if self.buffer is None or need > self.buffer.nbytes:
            old, self.buffer = self.buffer, self._alloc(max(int(need), 1))
            for ctx in self._contexts.values():
                set_device_memory(ctx, self.buffer.ptr, self.buffer.nbytes)
            if old is not None:
                old.free()
        self._contexts[id(context)] = context
        set_device_memory(context, self.buffer.ptr, self.buffer.nbytes)

    def detach(self, context) -> None:
        """Forget ``context``; the buffer is freed with the last one."""
        self._contexts.pop(id(context), None)
        if not self._contexts and self.buffer is not None:
            self.buffer.free()
            self.buffer = None


class TensorRTEngine(Engine):
    """A deserialized engine of one topology with its context, I/O buffers and refitter."""

    def __init__(self, topology: str, trt, engine, scratch: SharedScratch, stream, cuda,
                 weights=None, logger=None, nbytes: int = 0) -> None:
        self.topology = topology
        self._trt, self._engine, self._scratch, self._stream, self._cuda = trt, engine, scratch, stream, cuda
        self._weights, self._logger, self._nbytes = weights, logger, int(nbytes)
        with active(cuda):
            self._context = create_context(trt, engine)
            scratch.attach(self._context, device_memory_size(engine))
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._buffers: dict[str, Any] = {}
        self._refitter = None
        self.refits = 0
        #: timings of the last run: ``host_ms`` (copies in, enqueue, GPU work, copies out, by the
        #: host clock) and ``gpu_compute_ms`` (CUDA events around ``execute_async_v3`` only: the
        #: engine's GPU time, trtexec's "GPU Compute Time"); empty before the first run.
        self.last_timing: dict[str, float] = {}

    def _buffer(self, name: str, nbytes: int):
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self._buffers[name] = self._cuda.DeviceBuffer(nbytes)
        return buf

    def batch_range(self) -> tuple[int, int]:
        """(min, max) batch of the engine's optimization profile."""
        lo, _, hi = self._engine.get_tensor_profile_shape(self.inputs[0], 0)
        return int(lo[0]), int(hi[0])

    def run(self, images: np.ndarray, bound: Any = None) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch with the weights bound in place (``bound`` is ignored: a
        refitted engine holds its weights); returns output name (task) -> array."""
        if self._context is None:
            raise RuntimeError(f"TensorRT engine of topology {self.topology} is closed")
        images = np.ascontiguousarray(images, dtype=np.float32)
        lo, hi = self.batch_range()
        if images.ndim != 4 or not lo <= images.shape[0] <= hi:
            raise ValidationError(f"images of shape {images.shape}: expected [batch, 3, H, W] with batch in "
                                  f"{lo}..{hi} (the device profile's range)")
        with active(self._cuda):
            return self._run(images)

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        ctx, name = self._context, self.inputs[0]
        if not ctx.set_input_shape(name, images.shape):
            raise ValidationError(f"images of shape {images.shape} do not fit engine input '{name}'")
        buf = self._buffer(name, images.nbytes)
        self._stream.htod(buf, images)
        ctx.set_tensor_address(name, buf.ptr)
        host = {}
        for out in self.outputs:
            shape = tuple(ctx.get_tensor_shape(out))
            dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(out)))
            host[out] = np.empty(shape, dtype)
            ctx.set_tensor_address(out, self._buffer(out, host[out].nbytes).ptr)
        start = self._stream.record_event()
        if not ctx.execute_async_v3(self._stream.handle):
            raise RuntimeError(f"TensorRT execution of topology {self.topology} failed (see the TensorRT log)")
        end = self._stream.record_event()
        for out in self.outputs:
            self._stream.dtoh(host[out], self._buffers[out])
        self._stream.synchronize()
        self.last_timing = {"host_ms": 1e3 * (time.perf_counter() - t0), "gpu_compute_ms": end.ms_since(start)}
        return host

    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Refit the folded weights of another preference (stable FP32 names) into the engine."""
        if self._weights is None:
            raise BundleError(f"topology {self.topology}: no graph weights known; cannot bind")
        with active(self._cuda):
            if self._refitter is None:
                self._refitter = EngineRefitter(self._trt, self._engine, self._logger,
                                                f"engine of topology {self.topology}", self._weights.initial)
            self._refitter.refit(self._weights.convert(weights), self._stream)
        self.refits += 1

    def memory_bytes(self) -> int:
        """Engine bytes + I/O buffers + the shared scratch (counted once per engine)."""
        return self._nbytes + sum(b.nbytes for b in self._buffers.values()) + self._scratch.nbytes

    def close(self) -> None:
        """Release buffers, the context and the engine (idempotent)."""
        with active(self._cuda):
            for b in self._buffers.values():
                b.free()
            self._buffers.clear()
            if self._context is not None:
                self._scratch.detach(self._context)
            self._context = self._engine = self._refitter = None


class TensorRTBackend(Backend):
    """Engines for TensorRT on an NVIDIA GPU. Raises BackendUnavailable at once without one."""

    name = "tensorrt"
    #: Engines refit in place and share one scratch buffer and stream: runs must not overlap
    #: binds, loads or closes (the Runtime serializes them).
    binds_in_place = True
    builds_ahead = True               # `dymu-rt build` compiles every topology's engine
    needs_profile = True              # engines are built for one device profile

    @classmethod
    def check_available(cls) -> None:
        """TensorRT, pycuda and a GPU usable here (BackendUnavailable otherwise)."""
        check_available()

    def __init__(self) -> None:
        self._trt = import_tensorrt()
        self._facts = check_available()

        self._cuda = cuda
        self._logger = builder.get_logger(self._trt)
        with active(cuda):
            self._runtime = self._trt.Runtime(self._logger)
        self._stream = cuda.Stream()
        self._scratch = SharedScratch(cuda.DeviceBuffer)

    def device_facts(self) -> dict[str, Any]:
        """TensorRT version, GPU name, compute capability."""
        return dict(self._facts)

    def compile(self, request: EngineRequest, out_dir: Path) -> dict:
        """Build ``out_dir/<topology>.engine`` (+ ``.engine.json`` sidecar) for the request's profile.

        Returns ``{file, sha256, sidecar, precision}`` with paths relative to ``out_dir``.
        The timing cache is shared per device one level up (``engines/tensorrt/``).
        """
        graph, profile, topology = Path(request.graph), request.profile, request.topology
        if profile.backend != "tensorrt":
            raise ValidationError(f"profile '{profile.name}' is for backend '{profile.backend}', not 'tensorrt'")
        check_device(profile, self._facts)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tid = topology or Path(graph).stem
        src = builder.prepare_graph(graph, profile.precision, out_dir, tid, request.manifest)
        engine = out_dir / f"{tid}.engine"
        with active(self._cuda):
            cache = builder.timing_cache_path(out_dir.parent, self._facts)
            builder.build_engine(src, engine, profile, self._facts, cache, profile.precision, self._trt)
        return {"file": engine.name, "sha256": sha256_file(engine), "sidecar": engine.name + ".json",
                "precision": profile.precision}

    def load(self, request: EngineRequest) -> TensorRTEngine:
        """Load a built engine (``request.artifact``; its hash, when recorded, and its facts
        checked against this machine) or, without one, build it in memory from
        ``request.graph`` (in a temporary folder removed afterwards; ``request.timing_cache``
        when given)."""
        graph, profile, topology = Path(request.graph), request.profile, request.topology
        timing_cache = request.timing_cache
        check_device(profile, self._facts)
        if request.artifact is not None:
            path = Path(request.artifact)
            if not path.is_file():
                raise BundleError(f"TensorRT engine {path} is missing; rebuild it with "
                                  "`dymu-rt build --backend tensorrt`")
            data = path.read_bytes()
            want = request.artifact_sha256
            if want is not None:
                if sha256_bytes(data) != want:
                    raise BundleError(f"TensorRT engine {path} is corrupt (sha256 differs from the manifest); "
                                      "rebuild it with `dymu-rt build --backend tensorrt`")
            rec = read_sidecar(path)
            check_facts(rec, self._facts, path)
            src = path.parent / rec.get("graph", "")
            if not src.is_file():
                src = builder.prepare_graph(graph, rec.get("precision", profile.precision), path.parent, topology,
                                            request.manifest)
            weights = GraphWeights(src)
        else:
            with tempfile.TemporaryDirectory(prefix="dymu-trt-") as work:
                src = builder.prepare_graph(graph, profile.precision, work, topology, request.manifest)
                with active(self._cuda):
                    data = builder.build_serialized(src, profile, timing_cache, self._trt)
                weights = GraphWeights(src)          # read before the folder goes
        with active(self._cuda):
            engine = self._runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BundleError(f"TensorRT could not deserialize the engine of topology {topology}; rebuild it")
        return TensorRTEngine(topology, self._trt, engine, self._scratch, self._stream, self._cuda,
                              weights, self._logger, len(data))
