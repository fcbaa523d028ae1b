"""A TensorRT-style engine for runtime tests: it binds weights *in place* (like a refit) and
checks that nothing else touches its backend while it runs (TensorRT engines share one
scratch buffer and stream). Wraps real ONNX Runtime engines, so its outputs are real."""

import threading
import time

from dymu_rt.backends.base import Backend, Engine, EngineRequest
from dymu_rt.runtime import Runtime
from dymu_rt.runtime.binding import raw_weights


class InPlaceBackend(Backend):
    name = "fake-inplace"
    binds_in_place = True

    def __init__(self, rt: Runtime, delay: float = 0.0):
        self._ort, self._params, self._manifest = rt.backend, rt._params, rt.manifest
        self.delay = delay
        self.active = 0                      # engines of this backend inside run/bind/load/close
        self.violations: list[str] = []
        self.engines: dict[str, list] = {}
        self._lock = threading.Lock()

    def enter(self, what):
        with self._lock:
            self.active += 1
            if self.active > 1:
                self.violations.append(f"{what} overlapped another call")

    def leave(self):
        with self._lock:
            self.active -= 1

    def device_facts(self):
        return {}

    def compile(self, request, out_dir):
        raise NotImplementedError("in-place fake engines are never cached on disk")

    def load(self, request):
        self.enter("load")
        topology = request.topology
        try:
            slots = self._manifest.topologies[topology].bn_slots
            inner = self._ort.load(EngineRequest(request.graph, request.profile, topology,
                                                 raw_weights=raw_weights(self._params, slots), slots=slots))
            time.sleep(self.delay)
            eng = InPlaceEngine(self, inner)
            self.engines.setdefault(topology, []).append(eng)
            return eng
        finally:
            self.leave()


class InPlaceEngine(Engine):
    def __init__(self, backend, inner):
        self.topology, self.weight_kind = inner.topology, inner.weight_kind
        self._be, self._inner, self._bound = backend, inner, None
        self.binds, self.closed = 0, False

    def bind(self, weights):
        self._be.enter("bind")
        try:
            self._bound = self._inner.prepare(weights)
            self.binds += 1
            time.sleep(self._be.delay)
        finally:
            self._be.leave()

    def run(self, images, bound=None):
        self._be.enter("run")
        try:
            if self.closed:
                self._be.violations.append(f"run on closed engine {self.topology}")
            out = self._inner.run(images, self._bound)
            time.sleep(self._be.delay)
            return out
        finally:
            self._be.leave()

    def memory_bytes(self):
        return 1000

    def close(self):
        self._be.enter("close")
        self.closed = True
        self._be.leave()


def inplace_runtime(bundle, delay: float = 0.0):
    """A Runtime over ``bundle`` whose engines bind in place; returns (runtime, backend)."""
    base = Runtime.open(bundle)
    be = InPlaceBackend(base, delay)
    return Runtime(base.root, base.manifest, be, base.profile, cache_engines=False), be
