"""The bundle's shared tensor file: every topology graph's weights, stored once.

Why: graphs of different topologies hold the same tensors. Every graph is exported at the
*anchor* (BN folded with Δγ = Δβ = 0), so a given initializer name (``node3_1.conv1.conv.weight``,
``head_semseg.classifier.weight``) has the same value in every topology; a preference's
weights differ only in the modulated slots, and the runtime binds those by name for every
point anyway (:func:`dymu_rt.core.bn_fold.slot_weights`). Embedding the weights in
each graph made bundle size grow by a full weight copy per topology; with the store it
grows only by the graph structure.

How: :func:`write_store` takes the initializers of the *full tree* (every node of every
stream plus every head, exported at the anchor) and writes each one once
(content-deduplicated, :data:`ALIGN`-byte aligned, raw little-endian as ONNX ``raw_data``)
into ``graphs/weights.bin``: every model *parameter* whatever its size, and any other
tensor of at least :data:`INLINE_BELOW` bytes. Its index (name -> offset, length,
sha256, dtype, shape) is a :class:`TensorStore`. :func:`externalize` turns a topology
graph's initializers into ONNX external-data references (``location``/``offset``/
``length``) into that file, after checking each one's bytes against the store's sha256 —
a graph never silently holds weights other than the anchor's. Small exporter constants
(shapes, slice bounds) stay inline: ONNX shape inference needs their values.

Why parameters are external even when tiny (an 8-channel bias is 32 bytes): of ONNX
Runtime's two per-session override APIs, only ``SessionOptions.add_external_initializers``
binds a preference's weights correctly at ``ORT_ENABLE_ALL``, and it accepts external
initializers only. ``add_initializer`` overrides of conv weights/biases are *not* honoured
at ``ORT_ENABLE_ALL`` (measured with onnxruntime 1.31 on these graphs, inline or external
alike: the layout-optimized convs compute with the graph's own weights; correct up to
``ORT_ENABLE_EXTENDED``).

Consumers load a graph **by path** (``onnx.load(path)``, ``onnxruntime.InferenceSession(path)``,
TensorRT ``OnnxParser.parse_from_file``), with the weights file next to it; a graph read as
bytes has no folder to resolve ``weights.bin`` against (ORT then needs the session config
``session.model_external_initializers_file_folder_path``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterable, Mapping

from dymu_rt.core.errors import BundleError
from dymu_rt.core.io import atomic_path, sha256_file

#: Tensors smaller than this stay inline in each graph (shape arithmetic, tiny constants).
INLINE_BELOW = 1024
#: Every stored tensor starts at a multiple of this (cheap; lets readers map arrays aligned).
ALIGN = 64
#: Graph metadata keys naming the store a graph was written against.
META_FILE = "dymu_rt.weights"
META_SHA256 = "dymu_rt.weights_sha256"


@dataclasses.dataclass(frozen=True)
class StoredTensor:
    """Where one named tensor lies in the weights file, and what it must hash to."""

    offset: int
    length: int
    sha256: str
    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class TensorStore:
    """Index of a written weights file: ``location`` (relative to the graphs' folder),
    the file's sha256 and size, and its tensors by initializer name."""

    location: str
    sha256: str
    size: int
    tensors: Mapping[str, StoredTensor]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (the journal and the manifest's ``weights.tensors``)."""
        return {"location": self.location, "sha256": self.sha256, "bytes": self.size,
                "tensors": {n: {"offset": t.offset, "length": t.length, "sha256": t.sha256,
                                "dtype": t.dtype, "shape": list(t.shape)} for n, t in self.tensors.items()}}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "TensorStore":
        """Inverse of :meth:`to_json`."""
        return TensorStore(location=d["location"], sha256=d["sha256"], size=int(d["bytes"]),
                           tensors={n: StoredTensor(int(t["offset"]), int(t["length"]), t["sha256"], t["dtype"],
                                                    tuple(int(v) for v in t["shape"]))
                                    for n, t in d["tensors"].items()})


def raw_bytes(tensor) -> bytes:
    """An inline TensorProto's data as ONNX ``raw_data`` bytes (little-endian)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        raise ValueError(f"tensor {tensor.name!r} already uses external data")
    if tensor.HasField("raw_data"):
        return tensor.raw_data
    return numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data


def _dtype_name(data_type: int) -> str:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(data_type).name


def write_store(model, path: str | Path, always: Iterable[str] = ()) -> TensorStore:
    """Write the initializers of ``model`` once each to ``path``, atomically; returns the index.

    Stored: every initializer of at least INLINE_BELOW bytes, and every one named in
    ``always`` whatever its size (the model's parameters: a runtime may override any of
    them, see the module docstring). Equal contents under two names are stored once.
    """
    path = Path(path)
    always = set(always)
    tensors: dict[str, StoredTensor] = {}
    at: dict[str, int] = {}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            for init in model.graph.initializer:
                raw = raw_bytes(init)
                if len(raw) < INLINE_BELOW and init.name not in always:
                    continue
                digest = hashlib.sha256(raw).hexdigest()
                if digest not in at:
                    f.write(b"\0" * (-f.tell() % ALIGN))
                    at[digest] = f.tell()
                    f.write(raw)
                tensors[init.name] = StoredTensor(at[digest], len(raw), digest, _dtype_name(init.data_type),
                                                  tuple(int(d) for d in init.dims))
    return TensorStore(location=path.name, sha256=sha256_file(path), size=path.stat().st_size, tensors=tensors)


def externalize(model, store: TensorStore) -> int:
    """Point ``model``'s initializers at the store (in place); returns bytes left inline.

    An initializer whose name the store holds must have exactly the stored bytes (sha256),
    else RuntimeError: a graph must hold the anchor's weights. One the store does not name
    stays inline (a small or graph-specific constant).
    The graph's metadata records the store file and its sha256 (:data:`META_FILE`,
    :data:`META_SHA256`), so a graph's own sha256 changes when its weights file does.
    """
    from onnx import TensorProto

    inline = 0
    for init in model.graph.initializer:
        raw = raw_bytes(init)
        entry = store.tensors.get(init.name)
        if entry is None:
            inline += len(raw)
            continue
        if entry.length != len(raw) or entry.sha256 != hashlib.sha256(raw).hexdigest():
            raise RuntimeError(f"initializer {init.name!r} differs from the anchor's stored tensor; "
                               "topology graphs must be exported at the anchor (BN deltas 0)")
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            init.ClearField(field)
        del init.external_data[:]
        init.data_location = TensorProto.EXTERNAL
        for key, value in (("location", store.location), ("offset", entry.offset), ("length", entry.length)):
            kv = init.external_data.add()
            kv.key, kv.value = key, str(value)
    meta = {p.key: p for p in model.metadata_props}
    for key, value in ((META_FILE, store.location), (META_SHA256, store.sha256)):
        if key in meta:
            meta[key].value = value
        else:
            p = model.metadata_props.add()
            p.key, p.value = key, value
    return inline


def read_tensor(bundle: str | Path, weights: Mapping[str, Any], name: str):
    """One stored tensor of a bundle as a numpy array (read-only memory map), by name.

    ``weights`` is the manifest's ``weights`` section. For tools that want the anchor's
    value of an initializer without loading a graph (e.g. a refit's starting weights).
    """
    import numpy as np

    t = weights["tensors"].get(name)
    if t is None:
        raise BundleError(f"bundle {bundle}: the weights file holds no tensor {name!r}")
    count = int(np.prod(t["shape"], dtype=np.int64))
    return np.memmap(Path(bundle) / weights["file"], dtype=np.dtype(t["dtype"]).newbyteorder("<"), mode="r",
                     offset=int(t["offset"]), shape=(count,)).reshape(t["shape"])
