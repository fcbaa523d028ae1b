"""Precision lives in the graph: FP16 conversion, INT8 Q/DQ quantization, weight binding.

TensorRT 11 removed the FP16/INT8 builder flags and the INT8 calibrator classes, and
JetPack 6 ships TensorRT 10; both build a *strongly typed* network from whatever types
the ONNX graph carries (DESIGN.md §6). So reduced precision is a graph rewrite done
here, on CPU, once:

* :func:`convert_fp16` — every float initializer, constant and compute tensor in fp16;
  the graph inputs and outputs stay float32 behind ``Cast`` nodes, so callers never see
  a different interface. Outputs agree with the FP32 graph within
  :data:`FP16_TOLERANCE` (relative to each output's largest magnitude).
* :func:`quantize_int8` — Q/DQ nodes from a calibration set with ONNX Runtime's
  ``quantize_static`` (``QuantFormat.QDQ``, symmetric int8 activations and per-channel
  symmetric int8 weights, float biases: the form TensorRT's explicit quantization
  accepts). The same graph runs in ONNX Runtime's CPU INT8 mode.
* :class:`GraphWeights` — how a preference's folded conv weights (stable names
  ``<slot>.conv.weight`` / ``.conv.bias``, see ``dymu_rt.core.bn_fold.slot_weights``)
  map onto the initializers of a converted graph, i.e. the names a TensorRT refit or an
  ONNX Runtime initializer override must set.

Q/DQ weight binding (DESIGN.md §6). ``quantize_static`` replaces the float weight
``W`` of a conv by ``W_quantized`` (int8, [Cout, ...]), ``W_scale`` (float32 [Cout]) and
``W_zero_point`` (int8 [Cout], all 0) feeding a ``DequantizeLinear`` (axis 0); the bias
stays the float initializer ``<slot>.conv.bias``. Folding BN multiplies output channel
``c`` of the raw weight by ``s_c = (γ+Δγ)_c / σ_c``; the symmetric per-channel scale is
``max|W'_c| / 127``, so for ``s_c > 0`` the int8 values ``round(W'_c / scale_c)`` are the
same at every preference and only ``W_scale`` (and the float bias) change. A channel whose
``s_c`` changes sign flips its int8 values; :meth:`GraphWeights.convert` therefore always
recomputes them too, and reports via :meth:`GraphWeights.changed_names` which names really
differ from the graph, so a refit can send only those.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

import numpy as np

from dymu_rt.core.errors import ValidationError
from dymu_rt.core.io import atomic_path

# onnx 1.23 writes IR 14; onnxruntime 1.31 reads up to IR 10 (same as dymu_rt.compile.export).
IR_VERSION = 10

#: FP16 graph vs FP32 graph: ``max|fp16 - fp32| <= rtol * max(max|fp32|, atol)`` per output.
#: fp16 has an 11-bit mantissa (relative step ~1e-3); through ~20 conv layers the error
#: accumulates to a few 1e-3 of the output range on the fixture graphs, hence 1e-2.
FP16_TOLERANCE = {"rtol": 1e-2, "atol": 1.0}

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

# Inputs that ONNX defines as float32 whatever the compute type: keep them so.
_FP32_ONLY_INPUTS = {"Resize": {2}, "Upsample": {1}}
_FP16_MAX = float(np.finfo(np.float16).max)


# -- FP16 ------------------------------------------------------------------------------------------

def _to_fp16(arr: np.ndarray) -> np.ndarray:
    # Clip rather than overflow to inf: a saturated weight is wrong, an inf poisons every output.
    return np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16)


def convert_fp16(graph_path: str | Path, out_path: str | Path) -> Path:
    """Write an FP16 version of an FP32 ONNX graph to ``out_path`` (atomically).

    Initializers, ``Constant`` values and every float compute tensor become float16; each
    float32 graph input gets a ``Cast`` to float16 after it and each float32 output a
    ``Cast`` back to float32 before it, so inputs/outputs keep names, shapes and float32.
    Initializer names are unchanged (refit and binding use them). Returns ``out_path``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(graph_path))
    g = model.graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        raise ValidationError(f"{graph_path}: is a Q/DQ (INT8) graph; FP16 conversion takes an FP32 graph")
    keep32 = {n.input[i] for n in g.node for i in _FP32_ONLY_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            g.initializer[i].CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init)), init.name))
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                if not any(o in keep32 for o in node.output):
                    attr.t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(attr.t)), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16

    def rename_uses(old: str, new: str) -> None:
        for node in g.node:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = new

    head, tail = [], []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{inp.name}__fp16"
            rename_uses(inp.name, half)
            head.append(helper.make_node("Cast", [inp.name], [half], name=f"{inp.name}__to_fp16",
                                         to=TensorProto.FLOAT16))
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = f"{out.name}__fp16"
            for node in g.node:
                for k, name in enumerate(node.output):
                    if name == out.name:
                        node.output[k] = half
            rename_uses(out.name, half)
            tail.append(helper.make_node("Cast", [half], [out.name], name=f"{out.name}__to_fp32",
                                         to=TensorProto.FLOAT))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]            # stale float32 annotations; shape inference redoes them
    model = onnx.shape_inference.infer_shapes(model)
    _finish(model, out_path)
    return Path(out_path)


def _finish(model, out_path: str | Path) -> None:
    import onnx

    model.ir_version = min(model.ir_version, IR_VERSION) if model.ir_version else IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(out_path) as tmp:
        onnx.save(model, str(tmp))


# -- INT8 ------------------------------------------------------------------------------------------

def _calibrate_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if method not in table:
        raise ValidationError(f"calibration method '{method}' is not valid; expected one of "
                              f"{', '.join(CALIBRATION_METHODS)}")
    return table[method]


class ArrayReader:
    """A ``CalibrationDataReader`` over preprocessed images: one ``{input: [1, C, H, W]}``
    feed per image, rewindable (ONNX Runtime reads the set once per pass)."""

    def __init__(self, images: np.ndarray, input_name: str = "image") -> None:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or len(images) == 0:
            raise ValidationError(f"calibration images must be a non-empty [N, C, H, W] array, got "
                                  f"shape {images.shape}")
        self.images, self.input_name = images, input_name
        self._it: Optional[Iterator[dict]] = None

    def get_next(self) -> Optional[dict]:
        """The next feed, or None when the set is exhausted."""
        if self._it is None:
            self._it = ({self.input_name: self.images[i:i + 1]} for i in range(len(self.images)))
        return next(self._it, None)

    def rewind(self) -> None:
        """Start again from the first image."""
        self._it = None

    def __len__(self) -> int:
        return len(self.images)


def _as_ort_reader(reader):
    # ORT only calls get_next()/rewind()/set_range(); registering keeps isinstance checks happy.
    from onnxruntime.quantization import CalibrationDataReader

    if not isinstance(reader, CalibrationDataReader):
        CalibrationDataReader.register(type(reader))
    return reader


@contextlib.contextmanager
def _quiet_root_logger():
    # quantize_static logs advice ("consider pre-processing") on the root logger at every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(graph_path: str | Path, out_path: str | Path, reader, method: str = "minmax",
                  cache_path: str | Path | None = None, activations: str = "int8") -> Path:
    """Write an INT8 Q/DQ version of FP32 graph ``graph_path`` to ``out_path`` (atomically).

    ``reader`` is a calibration reader (``get_next()`` returning ``{"image": array}`` or
    None, ``rewind()``), e.g. :class:`ArrayReader`; it may be None when ``cache_path``
    already holds the tensor ranges of an earlier calibration. ``method`` is one of
    :data:`CALIBRATION_METHODS`. When ``cache_path`` is given and absent, the computed
    tensor ranges (ONNX Runtime's JSON calibration cache) are written there atomically.

    Weights are symmetric int8 per output channel, biases kept float. ``activations``:
    ``"int8"`` (default) symmetric int8, zero point 0 — what TensorRT requires, so one graph
    serves both backends; ``"uint8"`` asymmetric — ONNX Runtime's faster x86 CPU path
    (U8S8; S8S8 measured ~2x slower than U8S8 on AVX512-VNNI here, benchmarks/bench_precision.py)
    but not accepted by TensorRT. Returns ``out_path``.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calib = _calibrate_method(method)
    if activations not in ("int8", "uint8"):
        raise ValidationError(f"activation type '{activations}' is not valid; expected int8 or uint8")
    symmetric = activations == "int8"
    cache = Path(cache_path) if cache_path is not None else None
    if reader is None and (cache is None or not cache.is_file()):
        raise ValidationError("INT8 quantization needs calibration images (no cached ranges found)")
    with tempfile.TemporaryDirectory(prefix="dymu-int8-") as tmp, _quiet_root_logger():
        tmp_cache = None
        if cache is not None:
            tmp_cache = cache if cache.is_file() else Path(tmp) / "ranges.json"
        raw = Path(tmp) / "qdq.onnx"
        quantize_static(
            str(graph_path), str(raw), None if reader is None else _as_ort_reader(reader),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=calib,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False,
                           "CalibPercentile": 99.999},
            calibration_cache_path=None if tmp_cache is None else str(tmp_cache))
        model = onnx.load(str(raw))
        _finish(model, out_path)
        if tmp_cache is not None and tmp_cache != cache:
            with atomic_path(cache) as dst:
                dst.write_bytes(tmp_cache.read_bytes())
    return Path(out_path)


# -- what precision a graph is in, and how folded weights map onto it ---------------------------

def graph_precision(model) -> str:
    """``int8`` (has Q/DQ nodes), ``fp16`` (float16 initializers) or ``fp32``."""
    from onnx import TensorProto

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


@dataclass(frozen=True)
class QDQWeight:
    """Where a quantized conv weight lives: int8 values, per-channel scale, zero point."""

    quantized: str
    scale: str
    zero_point: str
    qmax: int = 127


class GraphWeights:
    """The refittable/bindable weights of one topology graph in whatever precision it is.

    Built from the ONNX graph (path or ModelProto). :meth:`convert` turns a preference's
    folded FP32 weights (``{"<slot>.conv.weight": W', "<slot>.conv.bias": b'}``) into the
    exact initializer names, dtypes and shapes of this graph:

    * fp32 graph: the same names, float32.
    * fp16 graph: the same names, float16.
    * int8 Q/DQ graph: ``<slot>.conv.weight`` becomes ``<slot>.conv.weight_quantized``
      (int8) and ``<slot>.conv.weight_scale`` (float32 [Cout]); the bias keeps its name
      and float32 (see the module docstring for why only scales change).

    A folded name the graph does not hold raises :class:`~dymu_rt.core.errors.ValidationError`.
    """

    def __init__(self, graph) -> None:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(graph)) if isinstance(graph, (str, Path)) else graph
        self.precision = graph_precision(model)
        self.initial = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.qdq: dict[str, QDQWeight] = {}
        for node in model.graph.node:
            if node.op_type != "DequantizeLinear" or node.input[0] not in self.initial:
                continue
            q = node.input[0]
            if not q.endswith("_quantized"):
                continue
            base = q[: -len("_quantized")]
            zp = node.input[2] if len(node.input) > 2 else ""
            qmax = int(np.iinfo(self.initial[q].dtype).max)
            self.qdq[base] = QDQWeight(q, node.input[1], zp, qmax)

    def names(self) -> list[str]:
        """The folded (FP32-graph) names this graph can take."""
        plain = [n for n in self.initial if n.endswith((".conv.weight", ".conv.bias"))]
        return sorted(set(plain) | {b for b in self.qdq if b.endswith(".conv.weight")})

    def convert(self, folded: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Graph initializers (name -> array in the graph's dtype) for folded weights."""
        out: dict[str, np.ndarray] = {}
        for name, value in folded.items():
            value = np.asarray(value, dtype=np.float32)
            if name in self.qdq:
                out.update(self._quantize(name, value))
                continue
            if name not in self.initial:
                raise ValidationError(f"weight '{name}' is not an initializer of this {self.precision} "
                                      "graph (stable names <slot>.conv.weight/.conv.bias expected)")
            ref = self.initial[name]
            if ref.shape != value.shape:
                raise ValidationError(f"weight '{name}' has shape {value.shape}; the graph expects {ref.shape}")
            out[name] = np.ascontiguousarray(_to_fp16(value) if ref.dtype == np.float16 else value)
        return out

    def _quantize(self, name: str, w: np.ndarray) -> dict[str, np.ndarray]:
        spec = self.qdq[name]
        ref_q = self.initial[spec.quantized]
        if ref_q.shape != w.shape:
            raise ValidationError(f"weight '{name}' has shape {w.shape}; the graph expects {ref_q.shape}")
        # Symmetric per-output-channel scale, as quantize_static computes it.
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale = np.where(amax > 0, amax / spec.qmax, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -spec.qmax, spec.qmax)
        return {spec.quantized: np.ascontiguousarray(q.astype(ref_q.dtype)),
                spec.scale: scale.reshape(self.initial[spec.scale].shape)}

    def changed_names(self, converted: Mapping[str, np.ndarray]) -> list[str]:
        """Names in ``converted`` whose values differ from the graph's own initializers."""
        return sorted(n for n, v in converted.items() if not np.array_equal(v, self.initial[n]))

