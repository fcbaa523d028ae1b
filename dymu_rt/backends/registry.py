"""Backends by name: ``get_backend("onnxruntime")`` / ``get_backend("tensorrt")``.

Backends are imported only when asked for, so the package imports (and its CPU paths work)
on a machine without TensorRT. The TensorRT package (``dymu_rt.backends.tensorrt``) is
expected to expose ``TensorRTBackend``; a missing import is a :class:`BackendUnavailable`.
"""

from __future__ import annotations

import importlib
from typing import Any

from dymu_rt.errors import BackendUnavailable, ValidationError

# name -> (module, class)
_BACKENDS = {
    "onnxruntime": ("dymu_rt.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("dymu_rt.backends.tensorrt", "TensorRTBackend"),
}


def backend_names() -> list[str]:
    """Names accepted by :func:`get_backend`."""
    return list(_BACKENDS)


def get_backend(name: str, **options: Any):
    """A backend instance by name; ``options`` go to its constructor (e.g. ``binding=``)."""
    if name not in _BACKENDS:
        raise ValidationError(f"unknown backend {name!r}; expected one of {', '.join(_BACKENDS)}")
    module, cls = _BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} is not available on this machine ({e})") from None
    try:
        factory = getattr(mod, cls)
    except AttributeError:
        raise BackendUnavailable(f"backend {name!r}: {module} has no {cls}") from None
    return factory(**options)
