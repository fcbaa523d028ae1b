"""Device buffers, streams and copies with pycuda: the only module that imports it.

TensorRT's runtime uses the device's *primary* CUDA context, so this module retains that
context (not ``pycuda.autoinit``, which would create a second one). A CUDA context is
current per *thread*: every entry point here, and every TensorRT call of the engines
(:func:`activate`), pushes the primary context for its duration and pops it after, so
the backend works from any thread (the runtime's ``infer`` is called from many). Memory is
released when a :class:`DeviceBuffer` is freed or garbage-collected.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any, Iterator

import numpy as np

from dymu_rt.core.errors import BackendUnavailable

_STATE: dict[str, Any] = {}
_INIT_LOCK = threading.Lock()


def _driver():
    """pycuda.driver, initialized, with the primary context of device 0 retained (once per
    process). The context is *not* left current: use :func:`activate`."""
    if "drv" in _STATE:
        return _STATE["drv"]
    with _INIT_LOCK:
        if "drv" in _STATE:
            return _STATE["drv"]
        return _init_driver()


def _init_driver():
    try:
        drv = importlib.import_module("pycuda.driver")
    except ImportError:
        raise BackendUnavailable("TensorRT backend unavailable: python package 'pycuda' is not installed "
                                 "(pip install 'dymu-rt[tensorrt]' on a machine with an NVIDIA GPU)") from None
    try:
        drv.init()
        if drv.Device.count() < 1:
            raise BackendUnavailable("TensorRT backend unavailable: no NVIDIA GPU found (CUDA reports 0 devices)")
        ctx = drv.Device(0).retain_primary_context()
    except drv.Error as e:
        raise BackendUnavailable(f"TensorRT backend unavailable: CUDA driver not usable ({e})") from None
    _STATE.update(drv=drv, ctx=ctx)
    return drv


@contextlib.contextmanager
def activate() -> Iterator[None]:
    """Make the primary context current in this thread for the block (push ... pop).

    Nests: pycuda keeps a per-thread context stack, and pushing the context already on top
    is allowed, so an entry point may call another.
    """
    drv = _driver()
    _STATE["ctx"].push()
    try:
        yield
    finally:
        drv.Context.pop()


def device_info() -> dict[str, Any]:
    """Name, compute capability ("major.minor") and total memory of device 0."""
    drv = _driver()
    dev = drv.Device(0)
    major, minor = dev.compute_capability()
    return {"name": dev.name(), "compute_capability": f"{major}.{minor}", "total_memory": dev.total_memory()}


class DeviceBuffer:
    """``nbytes`` of device memory; ``ptr`` is the address TensorRT wants."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        with activate():
            self._mem = _driver().mem_alloc(max(self.nbytes, 1))

    @property
    def ptr(self) -> int:
        return int(self._mem)

    def free(self) -> None:
        """Release the memory now (idempotent)."""
        if self._mem is not None:
            with activate():
                self._mem.free()
            self._mem = None


class Stream:
    """A CUDA stream with the copies the engines need."""

    def __init__(self) -> None:
        with activate():
            self._stream = _driver().Stream()

    @property
    def handle(self) -> int:
        return int(self._stream.handle)

    def htod(self, dst: DeviceBuffer, host: np.ndarray) -> None:
        """Copy a (contiguous, ideally page-locked) host array to the device, async."""
        with activate():
            _driver().memcpy_htod_async(dst.ptr, np.ascontiguousarray(host), self._stream)

    def dtoh(self, host: np.ndarray, src: DeviceBuffer) -> None:
        """Copy device memory into ``host`` (contiguous), async."""
        with activate():
            _driver().memcpy_dtoh_async(host, src.ptr, self._stream)

    def synchronize(self) -> None:
        with activate():
            self._stream.synchronize()

    def record_event(self) -> "Event":
        """A CUDA event recorded now on this stream (completes when the work before it does)."""
        return Event(self)


class Event:
    """A CUDA event recorded on a stream: GPU-side timestamps, as trtexec's "GPU Compute Time"
    is measured (host timers would also count the launch latency and the copies)."""

    def __init__(self, stream: Stream) -> None:
        with activate():
            self._event = _driver().Event()
            self._event.record(stream._stream)

    def ms_since(self, start: "Event") -> float:
        """Milliseconds of GPU time between ``start`` and this event (both must have completed:
        call after the stream's ``synchronize``)."""
        with activate():
            return float(start._event.time_till(self._event))


def pagelocked_empty(shape, dtype) -> np.ndarray:
    """A page-locked host array (fast async copies)."""
    with activate():
        return _driver().pagelocked_empty(tuple(shape), dtype)
