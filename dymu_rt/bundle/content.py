"""What a bundle's files *contain* is checked before any library sees them.

Hashes and path containment (``paths.py``) say a file is the one the manifest names and
stays inside the bundle; they say nothing when the attacker reseals the hashes. This module
checks content, reading the ONNX wire format itself (no ``onnx`` package, no recursion):

* a graph: the default-domain opset in [:data:`MIN_OPSET`, :data:`MAX_OPSET`], every node an
  op of :data:`ALLOWED_OPS` (standard ONNX compute ops; no control flow, subgraphs, model-local
  functions, strings or sequences), the inputs/outputs its role declares (a topology graph:
  ``image`` -> the manifest's task names; the edge hypernet ``r, c -> logits``; the weight
  hypernet ``r, c -> deltas`` of ``bn_delta_size`` values), every initializer's size against
  its bytes, inline or external (``offset + length`` within the file), the total against the
  memory budget (:func:`dymu_rt.core.limits.memory_budget`), and no constant-shaped
  ``ConstantOfShape`` / ``Expand`` / ``Tile`` that allocates beyond it; float initializers
  held inline must be finite;
* ``weights.bin``: every tensor of the manifest's index within the file, of its declared
  size, and finite (NaN/Inf weights are refused, not run);
* ``fold_params``: the four BN statistics of every slot of ``bn_layout``, of its channel
  count, finite, variances >= 0.

One BundleError line per failure, naming the file and what was expected.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dymu_rt.bundle.paths import _fields, _varint, inside
from dymu_rt.core import safetensors_np
from dymu_rt.core.errors import BundleError
from dymu_rt.core.limits import memory_budget

MIN_OPSET, MAX_OPSET = 7, 23
#: Standard ONNX (ai.onnx) compute ops a bundle graph may use.
ALLOWED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvInteger ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear
Div Dropout DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gelu
Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GroupNormalization HardSigmoid HardSwish
Hardmax Identity InstanceNormalization IsInf IsNaN LRN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax
LpNormalization LpPool MatMul MatMulInteger Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg Not
Or PRelu Pad Pow QLinearConv QLinearMatMul QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round
Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub
Sum Swish Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
#: Ops whose output size is set by a (possibly constant) shape input: (input index, kind).
_SHAPED = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}
#: ONNX TensorProto data type -> bytes per element (strings/complex refused)
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_FLOAT = {1: np.float32, 10: np.float16, 11: np.float64}
_MAX_DIM = 2**40


class _Bad(Exception):
    pass


def _packed_varints(value) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = _varint(value, i)
        out.append(v)
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _tensor(buf: bytes) -> dict:
    t = {"dims": [], "type": 0, "raw": None, "ints": [], "ext": {}, "external": False, "name": ""}
    for num, wire, value in _fields(buf):
        if num == 1:
            t["dims"] += [_signed(v) for v in _packed_varints(value)]
        elif num == 2 and wire == 0:
            t["type"] = value
        elif num == 9 and wire == 2:
            t["raw"] = value
        elif num in (5, 7) and value is not None:
            t["ints"] += [_signed(v) for v in _packed_varints(value)]
        elif num == 8 and wire == 2:
            t["name"] = value.decode("utf-8", "replace")
        elif num == 13 and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            t["ext"][entry.get(1, b"").decode("utf-8", "replace")] = entry.get(2, b"").decode("utf-8", "replace")
        elif num == 14 and wire == 0:
            t["external"] = value == 1
    return t


def _int_values(t: dict) -> Optional[list[int]]:
    """The integer values of a small constant tensor, or None when not constant-known."""
    if t["external"]:
        return None
    if t["raw"] is not None and t["type"] in (6, 7):
        dt = np.dtype("<i8" if t["type"] == 7 else "<i4")
        if len(t["raw"]) % dt.itemsize:
            raise _Bad(f"constant {t['name']!r} has {len(t['raw'])} bytes, not a whole number of values")
        return [int(v) for v in np.frombuffer(t["raw"], dt)]
    return list(t["ints"]) if t["type"] in (6, 7) else None


def _value_info(buf: bytes) -> tuple[str, list]:
    name, dims = "", []
    for num, wire, value in _fields(buf):
        if num == 1 and wire == 2:
            name = value.decode("utf-8", "replace")
        elif num == 2 and wire == 2:                       # TypeProto
            for n2, w2, v2 in _fields(value):
                if n2 == 1 and w2 == 2:                    # tensor_type
                    for n3, w3, v3 in _fields(v2):
                        if n3 == 2 and w3 == 2:            # shape
                            for n4, w4, v4 in _fields(v3):
                                if n4 == 1 and w4 == 2:    # dim
                                    d = None
                                    for n5, w5, v5 in _fields(v4):
                                        if n5 == 1 and w5 == 0:
                                            d = _signed(v5)
                                    dims.append(d)
    return name, dims


def parse_graph(data: bytes) -> dict:
    """The facts of a serialized ONNX model the checks need (ValueError when malformed)."""
    g = {"opsets": [], "functions": 0, "nodes": [], "inits": [], "inputs": [], "outputs": []}
    graph = None
    for num, wire, value in _fields(data):
        if num == 8 and wire == 2:
            entry = {n: v for n, w, v in _fields(value)}
            dom = entry.get(1, b"")
            g["opsets"].append((dom.decode("utf-8", "replace") if isinstance(dom, bytes) else "",
                                entry.get(2) if isinstance(entry.get(2), int) else -1))
        elif num == 7 and wire == 2:
            graph = value
        elif num == 25:
            g["functions"] += 1
    if graph is None:
        raise ValueError("no graph")
    for num, wire, value in _fields(graph):
        if wire != 2:
            continue
        if num == 1:
            node = {"op": "", "domain": "", "inputs": [], "outputs": [], "subgraph": False, "value": None}
            for n, w, v in _fields(value):
                if n == 4 and w == 2:
                    node["op"] = v.decode("utf-8", "replace")
                elif n == 7 and w == 2:
                    node["domain"] = v.decode("utf-8", "replace")
                elif n == 1 and w == 2:
                    node["inputs"].append(v.decode("utf-8", "replace"))
                elif n == 2 and w == 2:
                    node["outputs"].append(v.decode("utf-8", "replace"))
                elif n == 5 and w == 2:
                    for an, aw, av in _fields(v):
                        if an in (6, 11) and aw == 2:
                            node["subgraph"] = True
                        elif an == 5 and aw == 2:
                            node["value"] = _tensor(av)
            g["nodes"].append(node)
        elif num == 5:
            g["inits"].append(_tensor(value))
        elif num == 15:
            raise ValueError("sparse initializers")
        elif num == 11:
            g["inputs"].append(_value_info(value))
        elif num == 12:
            g["outputs"].append(_value_info(value))
    return g


def _numel(dims, what: str) -> int:
    n = 1
    for d in dims:
        if not 0 <= d <= _MAX_DIM:
            raise _Bad(f"{what} has dimension {d}")
        n *= d
    return n


def _expected_io(role: str, manifest) -> tuple[Optional[list[str]], Optional[list[str]]]:
    if role == "topology":
        return ["image"], [t.name for t in manifest.tasks]
    if role == "edge_hypernet":
        return ["r", "c"], ["logits"]
    if role == "weight_hypernet":
        return ["r", "c"], ["deltas"]
    return None, None


def _check_graph(path: Path, role: str, manifest, budget: int) -> None:
    data = path.read_bytes()
    try:
        g = parse_graph(data)
    except (ValueError, IndexError, UnicodeDecodeError):
        raise _Bad("is not a readable ONNX model") from None
    for dom, ver in g["opsets"]:
        if dom in ("", "ai.onnx"):
            if not MIN_OPSET <= ver <= MAX_OPSET:
                raise _Bad(f"uses ONNX opset {ver}; the runtime supports {MIN_OPSET}-{MAX_OPSET}")
        elif role != "engine":
            raise _Bad(f"imports operator domain {dom!r}; only the standard ONNX domain is supported")
    if g["functions"]:
        raise _Bad("defines model-local functions; not supported in a bundle")
    init_names = {t["name"] for t in g["inits"]}
    const: dict[str, dict] = {t["name"]: t for t in g["inits"]}
    for node in g["nodes"]:
        if node["subgraph"]:
            raise _Bad(f"node {node['op']!r} holds a subgraph; control flow is not supported in a bundle")
        if role != "engine":
            if node["domain"] not in ("", "ai.onnx"):
                raise _Bad(f"uses op {node['domain']}.{node['op']}; only standard ONNX ops are supported")
            if node["op"] not in ALLOWED_OPS:
                raise _Bad(f"uses op {node['op'][:40]!r}, which is not a supported ONNX op")
        if node["op"] == "Constant" and node["value"] is not None and node["outputs"]:
            const[node["outputs"][0]] = node["value"]
    # sizes: every initializer against its bytes and the budget
    total = 0
    sizes: dict[str, int] = {}
    for t in g["inits"] + [n["value"] for n in g["nodes"] if n["value"] is not None]:
        what = f"tensor {t['name'][:60]!r}"
        size = _ITEMSIZE.get(t["type"])
        if size is None:
            raise _Bad(f"{what} has ONNX data type {t['type']}, not a numeric type")
        nbytes = _numel(t["dims"], what) * size
        total += nbytes
        if t["external"]:
            loc = t["ext"].get("location", "")
            try:
                offset = int(t["ext"].get("offset", "0"))
                length = int(t["ext"].get("length", str(nbytes)))
            except ValueError:
                raise _Bad(f"{what} has a non-numeric external-data offset or length") from None
            f = path.parent / loc
            if loc not in sizes:
                sizes[loc] = f.stat().st_size if f.is_file() else -1
            if length != nbytes or offset < 0 or offset + length > sizes[loc]:
                raise _Bad(f"{what} claims {length:,} bytes at offset {offset:,} of {loc} "
                           f"({max(sizes[loc], 0):,} bytes; the tensor needs {nbytes:,})")
        elif t["raw"] is not None and len(t["raw"]) != nbytes:
            raise _Bad(f"{what} holds {len(t['raw']):,} bytes for {nbytes:,}")
        elif t["raw"] is not None and t["type"] in _FLOAT and nbytes:
            if not np.isfinite(np.frombuffer(t["raw"], np.dtype(_FLOAT[t["type"]]).newbyteorder("<"))).all():
                raise _Bad(f"{what} holds NaN or infinite values")
        if total > budget:
            raise _Bad(f"holds {total:,}+ bytes of tensors, over the memory budget of {budget:,} bytes")
    # allocations set by constant shapes
    for node in g["nodes"]:
        idx = _SHAPED.get(node["op"])
        if idx is None or len(node["inputs"]) <= idx or node["inputs"][idx] not in const:
            continue
        shape = _int_values(const[node["inputs"][idx]])
        if shape is None:
            continue
        n = 1
        for d in shape:
            n *= max(d, 0)
        if n * 4 > budget:
            raise _Bad(f"{node['op']} allocates {n * 4:,} bytes (constant shape {shape[:6]}), over the "
                       f"memory budget of {budget:,} bytes")
    want_in, want_out = _expected_io(role, manifest)
    if want_in is not None:
        ins = [n for n, _ in g["inputs"] if n not in init_names]
        outs = [n for n, _ in g["outputs"]]
        if sorted(ins) != sorted(want_in):
            raise _Bad(f"has inputs {ins[:6]}; a {role.replace('_', ' ')} graph takes {want_in}")
        if sorted(outs) != sorted(want_out):
            raise _Bad(f"has outputs {outs[:6]}; the manifest declares {want_out}")
        if role == "weight_hypernet":
            dims = dict(g["outputs"])["deltas"]
            if dims and dims[-1] is not None and dims[-1] > 0 and dims[-1] != manifest.bn_delta_size:
                raise _Bad(f"outputs {dims[-1]} BN deltas; the manifest's bn_delta_size is {manifest.bn_delta_size}")


def check_graph(root: Path, rel: str, role: str, manifest, budget: Optional[int] = None) -> None:
    """Refuse graph ``rel`` of bundle ``root`` unless its content passes (module docstring)."""
    path = inside(Path(root), rel, "graph")
    try:
        _check_graph(path, role, manifest, memory_budget() if budget is None else budget)
    except _Bad as e:
        raise BundleError(f"bundle {root}: graph {rel} {e}; refused (rebuild the bundle)") from None


def check_weights(root: Path, manifest) -> None:
    """Every tensor of the shared weight file within it, of its size, and finite."""
    w = manifest.weights
    if not isinstance(w, dict) or "file" not in w:
        return
    path = inside(Path(root), w["file"], "weights")
    size = path.stat().st_size
    tensors = w.get("tensors") or {}
    if not tensors:
        return
    mm = np.memmap(path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    for name, t in tensors.items():
        try:
            dtype = np.dtype(t["dtype"]).newbyteorder("<")
            off, n = int(t["offset"]), int(t["length"])
            shape = [int(d) for d in t["shape"]]
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"bundle {root}: weights tensor {name[:60]!r} has an unreadable record") from None
        need = math.prod(shape) * dtype.itemsize if all(d >= 0 for d in shape) else -1
        if off < 0 or n != need or off + n > size:
            raise BundleError(f"bundle {root}: weights tensor {name[:60]!r} claims {n:,} bytes at offset {off:,} "
                              f"of a {size:,}-byte file (its shape needs {need:,}); rebuild the bundle")
        if dtype.kind == "f" and n and not np.isfinite(mm[off:off + n].view(dtype)).all():
            raise BundleError(f"bundle {root}: weights tensor {name[:60]!r} holds NaN or infinite values; "
                              "refused (retrain or rebuild from a finite checkpoint)")


def check_fold_params(root: Path, manifest) -> None:
    """The BN statistics every modulated slot needs: present, of the right size, finite."""
    ref = manifest.controller.get("fold_params")
    if ref is None:
        return

    path = inside(Path(root), ref.file, "fold_params")
    try:
        fold = safetensors_np.load(path)
    except (ValueError, OSError) as e:
        raise BundleError(f"bundle {root}: {ref.file} is not a readable safetensors file ({e})") from None
    for slot in manifest.bn_layout:
        name, ch = slot.get("name"), slot.get("channels")
        for stat in ("bn_mean", "bn_var", "bn_weight", "bn_bias"):
            a = fold.get(f"{name}.{stat}")
            if a is None or a.size != ch:
                raise BundleError(f"bundle {root}: {ref.file} lacks {name}.{stat} of {ch} values "
                                  "(bn_layout names it); rebuild the bundle")
            if not np.isfinite(a).all() or (stat == "bn_var" and (a < 0).any()):
                raise BundleError(f"bundle {root}: {ref.file}: {name}.{stat} holds NaN, infinite"
                                  f"{' or negative' if stat == 'bn_var' else ''} values; refused")
    for key, a in fold.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise BundleError(f"bundle {root}: {ref.file}: {key[:60]} holds NaN or infinite values; refused")


def check_content(root: Path, manifest: Any) -> None:
    """Every content check of a bundle (graphs, weights, fold parameters)."""
    budget = memory_budget()
    for tid, t in manifest.topologies.items():
        check_graph(root, t.file, "topology", manifest, budget)
    for role, ref in manifest.controller.items():
        if ref.file.endswith(".onnx"):
            check_graph(root, ref.file, role if role in ("edge_hypernet", "weight_hypernet") else "other",
                        manifest, budget)
    for backend in manifest.engines.values():
        for prof in backend.values():
            for entry in prof.get("files", {}).values():
                if entry["file"].endswith(".onnx"):
                    check_graph(root, entry["file"], "engine", manifest, budget)
    check_weights(root, manifest)
    check_fold_params(root, manifest)
