"""Inference backends: the protocol (``base``), device profiles (``profile``), the registry
(``get_backend``), ONNX Runtime (``onnxruntime``, CPU) and TensorRT (``tensorrt``, optional,
imported lazily by name)."""

from dymu_rt.backends.registry import backend_names, get_backend

__all__ = ["get_backend", "backend_names"]
