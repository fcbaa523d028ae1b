"""Backends by name: the only list of backend names (``get_backend("onnxruntime")``).

Backends are imported only when asked for, so the package imports (and its CPU paths work)
on a machine without TensorRT or OpenVINO (``dymu_rt.backends.openvino`` imports ``openvino``
only when a backend is made; without it, one line naming the extra to install). The TensorRT package (``dymu_rt.backends.tensorrt``) is
expected to expose ``TensorRTBackend``; a missing import is a :class:`BackendUnavailable`.
Everything else asks a backend's class for its capabilities
(:class:`dymu_rt.backends.base.Backend`), never for its name.
"""

from __future__ import annotations

import importlib
from typing import Any

from dymu_rt.core.errors import BackendUnavailable, ValidationError

# name -> (module, class)
_BACKENDS = {
    "onnxruntime": ("dymu_rt.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("dymu_rt.backends.tensorrt", "TensorRTBackend"),
    "openvino": ("dymu_rt.backends.openvino", "OpenVinoBackend"),
}
#: the backend that runs everywhere (CPU), used when nothing else is asked for
DEFAULT_BACKEND = "onnxruntime"


def backend_names() -> list[str]:
    """Names accepted by :func:`get_backend`."""
    return list(_BACKENDS)


def check_name(name: str) -> str:
    """``name`` when it is a known backend, else a ValidationError listing the choices."""
    if name not in _BACKENDS:
        raise ValidationError(f"unknown backend {name!r}; expected one of {', '.join(_BACKENDS)}")
    return name


def backend_class(name: str):
    """The class of backend ``name`` (imported now; BackendUnavailable if it cannot be)."""
    module, cls = _BACKENDS[check_name(name)]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} is not available on this machine ({e}); "
                                 f"use --backend {DEFAULT_BACKEND}") from None
    try:
        return getattr(mod, cls)
    except AttributeError:
        raise BackendUnavailable(f"backend {name!r}: {module} has no {cls}") from None


def with_binding_modes() -> list[str]:
    """Names of the backends that offer several binding modes (``binding=``)."""
    names = []
    for name in _BACKENDS:
        try:
            if backend_class(name).binding_modes:
                names.append(name)
        except BackendUnavailable:
            continue
    return names


def get_backend(name: str, **options: Any):
    """A backend instance by name; ``options`` go to its constructor (e.g. ``binding=``)."""
    return backend_class(name)(**options)
