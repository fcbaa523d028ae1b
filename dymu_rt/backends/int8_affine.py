"""INT8 that pays on CPU and switches without a session: the *affine* Q/DQ graph.

Measured at the nyuv2 preset (``benchmarks/exp_int8.py``, one topology of 110-130 GMACs,
onnxruntime 1.32, AVX-512 VNNI, 1 thread, batch 1; ``benchmarks/results/issue14/exp_int8.json``):

=====================  ==========  ===================================================
graph                  vs FP32     notes
=====================  ==========  ===================================================
QDQ folded, U8S8       3.56x       int8 values change per preference: a session each
QDQ folded, S8S8       1.29x       x86 has no fast S8S8 QLinearConv path (what TRT takes)
QOperator, U8S8        2.41x
**QDQ affine, U8S8**   **3.39x**   raw convs quantized, BN affine in float outside:
                                   a preference switch is new [1, C, 1, 1] feeds
QDQ affine, S8S8       1.36x
FP32 at EXTENDED       0.90x       no NCHWc (the price of sharing weights, FP32)
=====================  ==========  ===================================================

So the ONNX Runtime INT8 engine runs the *affine* graph (as FP32 ``affine`` binding does):
each modulated conv keeps its **raw** weight W (identical at every preference, so its int8
values and per-channel scales never change), quantized per output channel, symmetric;
only ``Conv`` nodes are quantized (``op_types_to_quantize=["Conv"]``), so the conv's input
and output get Q/DQ pairs (ORT fuses DQ-Conv-Q into QLinearConv), and the preference's BN
``scale``/``shift`` are applied in float on the dequantized raw conv output as runtime
inputs. Activations are uint8 (asymmetric) on x86, int8 (symmetric) elsewhere. The raw
conv output does not depend on the preference of its own layer, so its calibrated range
holds for every preference; ranges after the affine are the anchor's (as before).

Store once: a bundle keeps only the calibrated tensor ranges (``ranges.json``, ONNX
Runtime's calibration cache) per topology. The Q/DQ graphs are derived from the one stored
copy of the weights when needed: :func:`affine_qdq_model` for ONNX Runtime (at engine
load, ~5 s per nyuv2 topology) and :func:`dymu_rt.backends.precision.quantize_int8` on the
folded FP32 graph with the same ranges for TensorRT (symmetric int8, at engine build):
one calibration, one Q/DQ graph family (the folded graph's tensors are a subset of the
affine graph's: a folded conv's output carries the name of the affine graph's ``Add``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from dymu_rt.backends import onnx_proto
from dymu_rt.backends.affine import affine_graph, modulated_convs
from dymu_rt.backends.precision import _calibrate_method, _quiet_root_logger
from dymu_rt.core.io import atomic_path

#: Name suffix of a raw (unfolded) conv weight in an affine graph.
RAW_SUFFIX = ".conv.raw_weight"


def affine_model(graph: Path, pool, slots: Sequence[str]):
    """The affine FP32 graph of ``graph`` with every weight filled in (a ModelProto in memory).

    ``pool`` is the bundle's :class:`~dymu_rt.bundle.weight_pool.WeightPool`: stored tensors
    and derived raw conv weights. Used to calibrate and to quantize (ORT's quantizer needs
    the values); sessions that run FP32 share the pool's memory instead (ort_sharing).
    """
    model = onnx_proto.load_model(graph, external=False, prefer_onnx=True)   # ORT's quantizer wants onnx's class
    modulated_convs(model, slots)
    model = affine_graph(model, None, slots)
    for i, init in enumerate(model.graph.initializer):
        # raw weights always come from the pool (affine_graph copied the folded tensor's proto)
        if init.data_location != onnx_proto.EXTERNAL and not init.name.endswith(RAW_SUFFIX):
            continue
        arr = pool.array(init.name, RAW_SUFFIX)
        model.graph.initializer[i].CopyFrom(onnx_proto.array_to_tensor(np.ascontiguousarray(arr), init.name,
                                                                        like=init))
    return model


def anchor_feeds(affine: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{<slot>.scale/shift: [1, C, 1, 1]}`` feeds from ``slot_weights(..., kind="affine")``."""
    return {k: np.ascontiguousarray(np.asarray(v, np.float32).reshape(1, -1, 1, 1)) for k, v in affine.items()}


class _Reader:
    """Calibration feeds: each image with the anchor's BN scale/shift."""

    def __init__(self, images: np.ndarray, feeds: Mapping[str, np.ndarray]) -> None:
        self.images, self.feeds, self.i = images, dict(feeds), 0

    def get_next(self) -> Optional[dict]:
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {"image": self.images[self.i - 1:self.i], **self.feeds}

    def rewind(self) -> None:
        self.i = 0


def _quantize(model, out: Path, reader, ranges: Path, method: str, activations: str,
              op_types: Optional[list] = ("Conv",)) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if reader is not None and not isinstance(reader, CalibrationDataReader):
        CalibrationDataReader.register(type(reader))
    sym = activations == "int8"
    with _quiet_root_logger():
        quantize_static(model, str(out), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=None if op_types is None else list(op_types),
                        per_channel=True, reduce_range=False,
                        activation_type=QuantType.QInt8 if sym else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=_calibrate_method(method),
                        extra_options={"ActivationSymmetric": sym, "WeightSymmetric": True, "QuantizeBias": False,
                                       "CalibPercentile": 99.999},
                        calibration_cache_path=str(ranges))


def calibrate_ranges(graph: Path, pool, slots: Sequence[str], feeds: Mapping[str, np.ndarray],
                     images: np.ndarray, ranges: Path, method: str = "minmax") -> Path:
    """Calibrate the affine graph of ``graph`` on ``images`` at the anchor's BN ``feeds``;
    writes ONNX Runtime's tensor-range cache to ``ranges`` (atomically). Returns ``ranges``."""
    model = affine_model(graph, pool, slots)
    with tempfile.TemporaryDirectory(prefix="dymu-calib-") as tmp, atomic_path(ranges) as dst:
        cache = Path(tmp) / "ranges.json"
        # Calibrate the tensors of every quantizable op (not only convs): the ranges are then a
        # superset serving both the affine graph (convs only) and TensorRT's folded graph
        # (whose conv outputs are the affine graph's Add outputs).
        _quantize(model, Path(tmp) / "q.onnx", _Reader(np.asarray(images, np.float32), feeds), cache, method,
                  "uint8", op_types=None)
        dst.write_bytes(cache.read_bytes())
    return ranges


def affine_qdq_model(graph: Path, pool, slots: Sequence[str], ranges: Path, activations: str = "uint8"):
    """The affine Q/DQ graph of ``graph`` from stored ``ranges`` (no calibration pass)."""
    import onnx

    model = affine_model(graph, pool, slots)
    with tempfile.TemporaryDirectory(prefix="dymu-int8-") as tmp:
        out = Path(tmp) / "q.onnx"
        _quantize(model, out, None, Path(ranges), "minmax", activations)
        return onnx.load(str(out))


def folded_qdq_model(graph: Path, pool, folded: Mapping[str, np.ndarray], ranges: Path, activations: str = "uint8"):
    """The folded Q/DQ graph of one preference (the INT8 second tier): ``graph`` with the
    preference's folded ``<slot>.conv.weight``/``.conv.bias`` (``folded``) and the pool's
    other weights, every quantizable op quantized from the stored ``ranges`` (the affine
    graph's calibration: a folded conv's output carries the name of the affine ``Add``, so
    the ranges cover it; ranges after each BN are the anchor's, as for the affine engine).
    Per-channel int8 weights quantized at this preference; ``activations`` uint8 (U8S8, x86)
    or int8. Measured 3.56x FP32 at nyuv2 (module docstring table). No calibration pass."""
    import onnx  # noqa: F401  (ORT's quantizer)

    model = onnx_proto.load_model(graph, external=False, prefer_onnx=True)
    for i, init in enumerate(model.graph.initializer):
        if init.name in folded:
            arr = np.ascontiguousarray(folded[init.name], np.float32)
        elif init.data_location == onnx_proto.EXTERNAL:
            arr = np.ascontiguousarray(pool.array(init.name, RAW_SUFFIX))
        else:
            continue
        model.graph.initializer[i].CopyFrom(onnx_proto.array_to_tensor(arr, init.name, like=init))
    with tempfile.TemporaryDirectory(prefix="dymu-int8-") as tmp:
        out = Path(tmp) / "q.onnx"
        _quantize(model, out, None, Path(ranges), "minmax", activations, op_types=None)
        return onnx.load(str(out))
