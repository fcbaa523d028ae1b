"""A small stand-in for Triton's ``triton_python_backend_utils``, to run the router in-process.

It implements what the router uses — ``Tensor``, ``InferenceRequest`` (incoming requests and
BLS ``exec``), ``InferenceResponse``, ``TritonError``, ``get_input_tensor_by_name``,
``get_output_tensor_by_name`` — with the semantics the real module documents: BLS ``exec``
returns a response (``has_error()``), it never raises. BLS calls run the exported model's
``model.onnx`` of the requested version with ONNX Runtime after checking the call against
the model's ``config.pbtxt`` the way the server would (known model and version, declared
input names, data types and dims, batch within ``max_batch_size``, requested outputs
declared), so a router that passes here speaks the repository's real interface.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types
from pathlib import Path

import numpy as np

from dymu_rt.serve.triton import config as C

_count = itertools.count()


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


TRITONSERVER_MEMORY_CPU, TRITONSERVER_MEMORY_GPU = 0, 2


class PreferredMemory:
    def __init__(self, memory_type: int, device_id: int = 0) -> None:
        self.memory_type, self.device_id = memory_type, device_id


class Tensor:
    def __init__(self, name: str, array: np.ndarray, on_gpu: bool = False) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor {name!r}: expected a numpy array, got {type(array).__name__}")
        self._name, self._array, self._gpu = name, array, on_gpu

    def name(self) -> str:
        return self._name

    def is_cpu(self) -> bool:
        return not self._gpu

    def as_numpy(self) -> np.ndarray:
        if self._gpu:       # what the real Tensor says for a BLS output left in GPU memory
            raise RuntimeError("Tensor is stored in GPU and cannot be converted to NumPy.")
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors, error=None) -> None:
        self._outputs, self._error = list(output_tensors), error

    def output_tensors(self):
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error


class InferenceRequest:
    server: "StubServer | None" = None          # where exec() sends BLS calls

    def __init__(self, model_name: str = "", requested_output_names=(), inputs=(), model_version: int = -1,
                 request_id: str = "", correlation_id: int = 0, preferred_memory=None) -> None:
        self.model_name, self.model_version = model_name, int(model_version)
        self.preferred_memory = preferred_memory
        self._outputs, self._inputs = list(requested_output_names), list(inputs)

    def inputs(self):
        return self._inputs

    def requested_output_names(self):
        return self._outputs

    def exec(self) -> InferenceResponse:
        return self.server.infer(self)


def get_input_tensor_by_name(request, name):
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response, name):
    return next((t for t in response.output_tensors() if t.name() == name), None)


class StubServer:
    """BLS target: the ONNX models of an exported repository, checked against their configs."""

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)
        self.configs = {p.name: C.parse_config(p / "config.pbtxt") for p in self.repo.iterdir()
                        if (p / "config.pbtxt").is_file()}
        self.sessions: dict = {}
        self.calls: list[tuple[str, int, int]] = []      # (model, version, batch) of each BLS call

    def _session(self, model: str, version: int):
        import onnxruntime as ort

        key = (model, version)
        if key not in self.sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.log_severity_level = 3
            self.sessions[key] = ort.InferenceSession(str(self.repo / model / str(version) / "model.onnx"), so,
                                                      providers=["CPUExecutionProvider"])
        return self.sessions[key]

    def check(self, cfg, tensors: dict, kind: str) -> None:
        """Raise ValueError unless ``tensors`` match the config's ``kind`` entries."""
        from tritonclient.grpc import model_config_pb2

        declared = {t.name: t for t in (cfg.input if kind == "input" else cfg.output)}
        batch = None
        for name, value in tensors.items():
            t = declared.get(name)
            if t is None:
                raise ValueError(f"{cfg.name}: unexpected {kind} {name!r}")
            want = np.dtype(C.TRITON_TO_NUMPY[model_config_pb2.DataType.Name(t.data_type)])
            if value.dtype != want:
                raise ValueError(f"{cfg.name}: {kind} {name!r} is {value.dtype}, config says {want}")
            shape = list(value.shape)
            if cfg.max_batch_size > 0:
                if not shape or not 1 <= shape[0] <= cfg.max_batch_size:
                    raise ValueError(f"{cfg.name}: {kind} {name!r} batch {shape[:1]} outside 1..{cfg.max_batch_size}")
                if batch is not None and shape[0] != batch:
                    raise ValueError(f"{cfg.name}: {kind} {name!r} batch {shape[0]} != {batch}")
                batch, shape = shape[0], shape[1:]
            dims = list(t.dims)
            if len(dims) != len(shape) or any(d != -1 and d != s for d, s in zip(dims, shape)):
                raise ValueError(f"{cfg.name}: {kind} {name!r} has shape {shape}, config dims {dims}")
        if kind == "input" and set(declared) - set(tensors):
            raise ValueError(f"{cfg.name}: missing inputs {sorted(set(declared) - set(tensors))[:3]}")

    def infer(self, request: InferenceRequest) -> InferenceResponse:
        cfg = self.configs.get(request.model_name)
        version = request.model_version
        try:
            if cfg is None:
                raise ValueError(f"unknown model {request.model_name!r}")
            if version == -1:
                version = max(int(p.name) for p in (self.repo / cfg.name).iterdir() if p.name.isdigit())
            if not (self.repo / cfg.name / str(version) / "model.onnx").is_file():
                raise ValueError(f"model {cfg.name!r} has no version {version}")
            feeds = {t.name(): t.as_numpy() for t in request.inputs()}
            self.check(cfg, feeds, "input")
            unknown = set(request.requested_output_names()) - {t.name for t in cfg.output}
            if unknown:
                raise ValueError(f"{cfg.name}: unknown outputs {sorted(unknown)}")
            names = request.requested_output_names()
            values = self._session(cfg.name, version).run(names, feeds)
            self.calls.append((cfg.name, version, len(next(iter(feeds.values()))) if cfg.max_batch_size else 1))
            # GPU instances answer in GPU memory unless the caller asked for host memory
            gpu = any(g.kind == 1 for g in cfg.instance_group) and not (
                request.preferred_memory is not None and request.preferred_memory.memory_type == TRITONSERVER_MEMORY_CPU)
            return InferenceResponse([Tensor(n, v, on_gpu=gpu) for n, v in zip(names, values)])
        except Exception as e:      # the real exec() reports every failure in the response
            return InferenceResponse([], TritonError(str(e)))


def load_router(repo: Path, version: int):
    """(router instance, server): the repository's ``dymu/<version>/model.py`` imported with this
    stand-in as ``triton_python_backend_utils`` and initialized the way Triton does."""
    import json

    server = StubServer(repo)
    stub = types.ModuleType("triton_python_backend_utils")
    for name in ("TritonError", "Tensor", "InferenceResponse", "InferenceRequest", "get_input_tensor_by_name",
                 "get_output_tensor_by_name", "PreferredMemory", "TRITONSERVER_MEMORY_CPU"):
        setattr(stub, name, globals()[name])
    stub.InferenceRequest = type("InferenceRequest", (InferenceRequest,), {"server": server})
    sys.modules["triton_python_backend_utils"] = stub
    # a fresh vendored package per router folder (another test may have loaded another copy)
    for mod in [m for m in sys.modules if m == "dymu_vendor" or m.startswith("dymu_vendor.")]:
        del sys.modules[mod]
    sys.path[:] = [p for p in sys.path if not (Path(p) / "dymu_vendor").is_dir()]
    path = Path(repo) / "dymu" / str(version) / "model.py"
    spec = importlib.util.spec_from_file_location(f"dymu_router_{next(_count)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    router = module.TritonPythonModel()
    cfg = server.configs["dymu"]
    from google.protobuf import json_format

    router.initialize({"model_config": json.dumps(json_format.MessageToDict(cfg, preserving_proto_field_name=True)),
                       "model_version": str(version), "model_name": "dymu",
                       "model_repository": str(Path(repo) / "dymu"), "model_instance_kind": "CPU"})
    return router, server, stub
