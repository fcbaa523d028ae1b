"""The pycuda module of the TensorRT backend (dymu_rt.backends.tensorrt.cuda) on a real GPU.

This is the one part of the TensorRT backend that needs a GPU but not TensorRT itself:
device buffers, streams, async copies, page-locked host memory, and the primary context
pushed/popped per call so that any thread can use it. Marked ``gpu``; skipped (with the
reason) where pycuda or an NVIDIA GPU is missing.
"""

import importlib.util
import threading

import numpy as np
import pytest


def _has_gpu_pycuda() -> bool:
    if importlib.util.find_spec("pycuda") is None:
        return False
    try:
        import pycuda.driver as drv

        drv.init()
        return drv.Device.count() > 0
    except Exception:
        return False


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _has_gpu_pycuda(), reason="needs the pycuda package and an NVIDIA GPU")]


def test_device_info_names_the_gpu():
    from dymu_rt.backends.tensorrt import cuda

    info = cuda.device_info()
    major, minor = (int(v) for v in info["compute_capability"].split("."))
    assert info["name"] and major >= 5 and minor >= 0 and info["total_memory"] > 2**30


def test_roundtrip_copies_through_device_memory():
    from dymu_rt.backends.tensorrt import cuda

    x = np.random.default_rng(0).random((2, 3, 17, 19), dtype=np.float32)
    buf = cuda.DeviceBuffer(x.nbytes)
    stream = cuda.Stream()
    host_in = cuda.pagelocked_empty(x.shape, np.float32)
    host_in[...] = x
    host_out = cuda.pagelocked_empty(x.shape, np.float32)
    host_out[...] = 0
    stream.htod(buf, host_in)
    stream.dtoh(host_out, buf)
    stream.synchronize()
    assert np.array_equal(host_out, x)
    assert buf.ptr != 0 and stream.handle != 0
    buf.free()
    buf.free()                      # idempotent


def test_any_thread_can_copy_concurrently():
    from dymu_rt.backends.tensorrt import cuda

    errors, results = [], {}

    def work(i: int) -> None:
        try:
            x = np.full((1024,), i, dtype=np.float32)
            buf, stream = cuda.DeviceBuffer(x.nbytes), cuda.Stream()
            out = np.zeros_like(x)
            for _ in range(20):
                stream.htod(buf, x)
                stream.dtoh(out, buf)
                stream.synchronize()
            results[i] = out.copy()
            buf.free()
        except Exception as e:      # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == list(range(6))
    assert all(np.all(results[i] == i) for i in range(6))
