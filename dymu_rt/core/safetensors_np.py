"""Read and write safetensors files with numpy alone (no ``safetensors`` package).

Why a second reader: the Triton router (:mod:`dymu_rt.serve.triton`) runs inside Triton's
Python backend, whose stock environment has numpy and nothing else, and it ships its BN
coefficients as safetensors (the project's weights format, never pickle). The format is
small enough to read directly: an 8-byte little-endian header length, a JSON header
``{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}``, then the
raw little-endian tensor bytes (offsets relative to the end of the header).

This module imports only the standard library and numpy: it is vendored into the router
verbatim (see :mod:`dymu_rt.serve.triton.vendor`). Tests check it against the
``safetensors`` package both ways.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U8": "u1", "BOOL": "?"}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items()}


def load(path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays (copies, native byte order).

    Raises ValueError for a file that is not a well-formed safetensors file.
    """
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable safetensors header ({e})") from None
    body = memoryview(data)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        begin, end = (int(v) for v in info["data_offsets"])
        shape = tuple(int(v) for v in info["shape"])
        if dtype is None or not 0 <= begin <= end <= len(body):
            raise ValueError(f"{path}: tensor {name!r} has dtype {info.get('dtype')!r} or offsets "
                             f"{[begin, end]} this reader does not accept")
        arr = np.frombuffer(body[begin:end], dtype=dtype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r} has {arr.size} values for shape {list(shape)}")
        out[name] = arr.reshape(shape).astype(np.dtype(dtype).newbyteorder("="), copy=True)
    return out


def dumps(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """``tensors`` serialized as a safetensors file (names sorted, 8-byte aligned header)."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        kind = _NAMES.get(a.dtype.str)
        if kind is None:
            raise ValueError(f"tensor {name!r}: dtype {a.dtype} is not supported")
        raw = a.tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)
