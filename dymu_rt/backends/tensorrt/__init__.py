"""TensorRT backend (NVIDIA GPUs and Jetson), an optional extra.

One folder, one concept per module (the Polygraphy habit):

* ``facts.py``   — lazy ``tensorrt`` import, :func:`check_available`, the device facts an
  engine is tied to (TensorRT version, GPU name, compute capability), sidecar files and the
  refusal of mismatched engines.
* ``cuda.py``    — the only module touching pycuda: device buffers, stream, copies.
* ``builder.py`` — ONNX graph -> strongly typed network -> serialized engine (+ sidecar),
  with the device profile's batch range, workspace, optimization level, DLA, REFIT, and one
  timing cache per device.
* ``refit.py``   — binding a preference's folded weights into a refittable engine.
* ``engine.py``  — ``TensorRTEngine`` (run with ``execute_async_v3``, one scratch buffer
  shared by every cached engine's context) and ``TensorRTBackend`` (``name = "tensorrt"``).

Importing this package never imports ``tensorrt`` or ``pycuda``; constructing
:class:`TensorRTBackend` (or calling :func:`check_available`) on a machine without them or
without a GPU raises :class:`~dymu_rt.core.errors.BackendUnavailable` with one clear line.
Precision is not a builder setting: it lives in the graph (``dymu_rt.backends.precision``).
"""

from dymu_rt.backends.tensorrt.engine import TensorRTBackend, TensorRTEngine
from dymu_rt.backends.tensorrt.facts import check_available

__all__ = ["TensorRTBackend", "TensorRTEngine", "check_available"]
