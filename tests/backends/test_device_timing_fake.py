"""The CUDA-event timing path on the CPU, against fakes (issue 28): TensorRT engines report
``last_timing["gpu_compute_ms"]`` from two CUDA events, the runtime's profiler reads it
into ``gpu_compute_*`` statistics. Before, only GPU tests reached this code. < 1 s."""

from __future__ import annotations

import contextlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from dymu_rt.backends.tensorrt import cuda
from dymu_rt.runtime.latency import time_engine
from dymu_rt.runtime.runtime import Runtime


class _FakeEvent:
    clock = itertools.count(start=10, step=7)              # a GPU clock in ms: each record is 7 ms later

    def __init__(self):
        self.t = None

    def record(self, stream):
        self.t = float(next(self.clock))

    def time_till(self, other):                            # pycuda: ms from self to other
        return other.t - self.t


@pytest.fixture
def fake_driver(monkeypatch):
    ctx = SimpleNamespace(push=lambda: None)
    drv = SimpleNamespace(Event=_FakeEvent, Context=SimpleNamespace(pop=lambda: None))
    monkeypatch.setitem(cuda._STATE, "drv", drv)
    monkeypatch.setitem(cuda._STATE, "ctx", ctx)
    return drv


def test_event_ms_since_is_the_gpu_time_from_start_to_end(fake_driver):
    stream = SimpleNamespace(_stream=object())
    start = cuda.Event(stream)
    end = cuda.Event(stream)
    assert end.ms_since(start) == pytest.approx(7.0)
    later = cuda.Event(stream)
    assert later.ms_since(start) == pytest.approx(14.0)


def test_profiler_reports_the_device_times_next_to_the_host_times():
    device = iter([5.0, 1.0, 2.0, 3.0, 4.0, 100.0])           # warm-up run first, then 5 timed runs
    last = {}

    def run():
        last["gpu_compute_ms"] = next(device)

    row = time_engine(run, iters=5, warmup=1, device_ms=lambda: last.get("gpu_compute_ms"))
    assert row["gpu_compute_p50_ms"] == pytest.approx(3.0)      # median of 1, 2, 3, 4, 100: warm-up left out
    assert row["gpu_compute_p99_ms"] > 4.0
    assert row["p50_ms"] < 1000 and "gpu_compute_count" not in row
    plain = time_engine(lambda: None, iters=3, warmup=0)
    assert not any(k.startswith("gpu_compute") for k in plain)


def test_runtime_reads_the_engines_last_timing():
    engine = SimpleNamespace(last_timing={"host_ms": 9.0, "gpu_compute_ms": 2.5})
    state = SimpleNamespace(engine=engine)
    assert Runtime._device_ms(state)() == 2.5
    engine.last_timing = {"host_ms": 9.0, "gpu_compute_ms": 1.5}
    assert Runtime._device_ms(state)() == 1.5                   # read at each call, not once
    assert Runtime._device_ms(SimpleNamespace(engine=object()))() is None   # ONNX Runtime: no device time
    assert np.isfinite(2.5)
