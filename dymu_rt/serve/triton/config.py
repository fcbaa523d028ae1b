"""Triton ``config.pbtxt`` files: built as plain data, written as protobuf text format.

Writing needs no protobuf package: :func:`to_pbtxt` prints the small subset of the text
format a model configuration uses (messages, repeated fields, strings, numbers, enums).
Reading a written file back with Triton's own ``ModelConfig`` message is
:func:`parse_config` (needs the optional ``tritonclient[grpc]``, which ships
``tritonclient.grpc.model_config_pb2``); the tests parse every file that way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from dymu_rt.core.errors import BackendUnavailable

#: the router model's name in an exported repository (the model clients call)
ROUTER = "dymu"

#: ONNX element type name (onnxruntime's ``tensor(...)``) -> Triton data type
ONNX_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
                  "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32", "tensor(int8)": "TYPE_INT8",
                  "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING"}
#: Triton data type -> numpy dtype string (TYPE_STRING: object arrays of bytes)
TRITON_TO_NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_FP64": "float64", "TYPE_INT64": "int64",
                   "TYPE_INT32": "int32", "TYPE_INT8": "int8", "TYPE_UINT8": "uint8", "TYPE_BOOL": "bool",
                   "TYPE_STRING": "object"}
#: dymu-rt's parameters in every config (``parameters`` map)
PARAM_BUNDLE_SHA = "dymu_rt.bundle_sha256"
PARAM_PRODUCER = "dymu_rt.producer"


class Enum(str):
    """A protobuf enum value (printed unquoted), e.g. ``Enum("KIND_CPU")``."""


def tensor(name: str, dtype: str, dims: Sequence[int]) -> dict:
    """One ``input``/``output`` entry."""
    return {"name": name, "data_type": Enum(dtype), "dims": [int(d) for d in dims]}


def parameters(values: Mapping[str, Any]) -> list[dict]:
    """``parameters`` map entries (string values; non-strings as compact JSON)."""
    return [{"key": k, "value": {"string_value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)}}
            for k, v in values.items()]


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)            # a JSON string literal is a valid text-format string
    raise TypeError(f"cannot print {type(v).__name__} in a pbtxt")


def _lines(msg: Mapping[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    for key, value in msg.items():
        if isinstance(value, Mapping):
            out += [f"{pad}{key} {{", *_lines(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            if value and all(isinstance(v, Mapping) for v in value):
                out.append(f"{pad}{key} [")
                for i, v in enumerate(value):
                    out += [f"{pad}  {{", *_lines(v, indent + 2), f"{pad}  }}" + ("," if i < len(value) - 1 else "")]
                out.append(f"{pad}]")
            else:
                out.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}")
    return out


def to_pbtxt(config: Mapping[str, Any]) -> str:
    """A model configuration (nested dicts/lists, :class:`Enum` for enum values) as pbtxt."""
    return "\n".join(_lines(config, 0)) + "\n"


def model_io(model) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of an ONNX model (a path or serialized bytes) as config entries with
    the model's full dims (symbolic -> -1), read by ONNX Runtime (the base install's)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL     # metadata only
    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])

    def entry(v):
        return tensor(v.name, ONNX_TO_TRITON[v.type], [d if isinstance(d, int) else -1 for d in v.shape])

    return [entry(v) for v in sess.get_inputs()], [entry(v) for v in sess.get_outputs()]


def model_config_message():
    """Triton's ``ModelConfig`` protobuf class, or BackendUnavailable with the install hint."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise BackendUnavailable(f"checking Triton configs needs tritonclient's ModelConfig protobuf ({e}); "
                                 "pip install 'tritonclient[grpc]' (or dymu-rt[triton])") from None
    return model_config_pb2.ModelConfig


def parse_config(path) -> Any:
    """Parse a ``config.pbtxt`` with Triton's ``ModelConfig`` (raises on any unknown field)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(), model_config_message()())
