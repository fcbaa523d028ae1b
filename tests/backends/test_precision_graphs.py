"""FP16 conversion and INT8 Q/DQ graphs: valid ONNX, run in ONNX Runtime, close to FP32;
folded weights map onto their initializers (Q/DQ: per-channel scales)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dymu_rt.backends.precision import (
    FP16_TOLERANCE,
    ArrayReader,
    GraphWeights,
    convert_fp16,
    graph_precision,
    quantize_int8,
)
from dymu_rt.core.errors import ValidationError
from graph_fixtures import export_tiny_graph

torch.set_num_threads(1)

# INT8 (minmax, 16 random calibration images) vs FP32 on the tiny graph: measured ~1-2% of the
# output range; 10% leaves room for other seeds while still catching a broken quantization.
INT8_REL_ERROR = 0.10


def session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    src = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run(path, x, overrides=None):
    import onnx
    from onnx import numpy_helper

    if overrides:
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            if init.name in overrides:
                init.CopyFrom(numpy_helper.from_array(overrides[init.name], init.name))
        path = model.SerializeToString()
    s = session(path)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": x})))


def rel_error(a, b):
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("precision")
    fp32 = export_tiny_graph(d / "tree.onnx")
    fp16 = convert_fp16(fp32, d / "tree.fp16.onnx")
    rng = np.random.default_rng(0)
    calib = rng.random((16, 3, 32, 32), dtype=np.float32)
    int8 = quantize_int8(fp32, d / "tree.int8.onnx", ArrayReader(calib), method="minmax",
                         cache_path=d / "ranges.json")
    return {"fp32": fp32, "fp16": fp16, "int8": int8, "dir": d, "calib": calib}


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(7).random((2, 3, 32, 32), dtype=np.float32)


def test_fp16_graph_is_valid_fp16_with_fp32_io(graphs):
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(graphs["fp16"]))
    onnx.checker.check_model(model, full_check=True)
    assert graph_precision(model) == "fp16"
    assert model.ir_version <= 10
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in model.graph.input)
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in model.graph.output)
    weights = {i.name: i.data_type for i in model.graph.initializer if i.name.endswith(".conv.weight")}
    assert weights and set(weights.values()) == {TensorProto.FLOAT16}
    fp32_names = {i.name for i in onnx.load(str(graphs["fp32"])).graph.initializer}
    assert set(weights) <= fp32_names          # names kept: refit/binding still find them


def test_fp16_outputs_close_to_fp32(graphs, x):
    ref, out = run(graphs["fp32"], x), run(graphs["fp16"], x)
    assert ref.keys() == out.keys()
    for k in ref:
        assert out[k].dtype == np.float32 and out[k].shape == ref[k].shape
        scale = max(np.abs(ref[k]).max(), FP16_TOLERANCE["atol"])
        assert np.abs(out[k] - ref[k]).max() <= FP16_TOLERANCE["rtol"] * scale, k
        assert not np.array_equal(out[k], ref[k])   # it really ran in fp16


def test_fp16_refuses_qdq_graph(graphs, tmp_path):
    with pytest.raises(ValidationError, match="Q/DQ"):
        convert_fp16(graphs["int8"], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_int8_graph_valid_symmetric_and_accurate(graphs, x):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graphs["int8"]))
    onnx.checker.check_model(model, full_check=True)
    assert graph_precision(model) == "int8"
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [v for k, v in inits.items() if k.endswith("zero_point")]
    assert zps and all((z == 0).all() and z.dtype == np.int8 for z in zps)   # TensorRT needs symmetric int8
    assert inits["node1_0.conv1.conv.bias"].dtype == np.float32               # bias kept float
    assert inits["node1_0.conv1.conv.weight_scale"].shape == (inits["node1_0.conv1.conv.weight_quantized"].shape[0],)
    ref, out = run(graphs["fp32"], x), run(graphs["int8"], x)
    for k in ref:
        err = rel_error(ref[k], out[k])
        assert 0 < err < INT8_REL_ERROR, (k, err)


def test_int8_cached_ranges_reproduce_graph_without_images(graphs, tmp_path):
    out = quantize_int8(graphs["fp32"], tmp_path / "again.onnx", None, cache_path=graphs["dir"] / "ranges.json")
    assert out.read_bytes() == Path(graphs["int8"]).read_bytes()
    with pytest.raises(ValidationError, match="calibration images"):
        quantize_int8(graphs["fp32"], tmp_path / "none.onnx", None, cache_path=tmp_path / "absent.json")
    with pytest.raises(ValidationError, match="expected one of minmax, entropy, percentile"):
        quantize_int8(graphs["fp32"], tmp_path / "m.onnx", ArrayReader(graphs["calib"]), method="kl")


def test_qdq_mapping_reproduces_quantized_weights(graphs):
    import onnx
    from onnx import numpy_helper

    f32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(graphs["fp32"])).graph.initializer}
    folded = {k: v for k, v in f32.items() if k.endswith((".conv.weight", ".conv.bias"))}
    gw = GraphWeights(graphs["int8"])
    converted = gw.convert(folded)
    assert "node1_0.conv1.conv.weight_scale" in converted and "node1_0.conv1.conv.weight" not in converted
    assert gw.changed_names(converted) == []     # exactly what quantize_static wrote


def test_qdq_bn_rescale_changes_only_scales_and_bias(graphs, x):
    """DESIGN §6: a positive per-channel rescale (another preference's folded BN) changes the
    weight scale and the float bias, not the int8 values; binding it runs like the FP32 graph."""
    import onnx
    from onnx import numpy_helper

    f32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(graphs["fp32"])).graph.initializer}
    rng = np.random.default_rng(3)
    slot = "node1_1.conv1.conv"
    w, b = f32[f"{slot}.weight"], f32[f"{slot}.bias"]
    # shrink (so the activation ranges calibrated at the old weights still cover the new ones)
    s = rng.uniform(0.2, 0.5, w.shape[0]).astype(np.float32)
    new = {f"{slot}.weight": w * s[:, None, None, None], f"{slot}.bias": b * s}
    gw = GraphWeights(graphs["int8"])
    converted = gw.convert(new)
    assert gw.changed_names(converted) == [f"{slot}.bias", f"{slot}.weight_scale"]
    ref = run(graphs["fp32"], x, new)
    out = run(graphs["int8"], x, converted)
    stale = run(graphs["int8"], x)
    old = run(graphs["fp32"], x)
    assert rel_error(ref["depth"], old["depth"]) > 3 * rel_error(ref["depth"], out["depth"])
    for k in ref:
        assert rel_error(ref[k], out[k]) < INT8_REL_ERROR
    # the slot feeds only stream 1 (depth): binding moved that output towards the new reference
    assert rel_error(ref["depth"], out["depth"]) < rel_error(ref["depth"], stale["depth"])


def test_qdq_sign_flip_changes_int8_values(graphs):
    import onnx
    from onnx import numpy_helper

    f32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(graphs["fp32"])).graph.initializer}
    w = f32["node1_0.conv1.conv.weight"].copy()
    w[0] *= -1
    gw = GraphWeights(graphs["int8"])
    assert gw.changed_names(gw.convert({"node1_0.conv1.conv.weight": w})) == [
        "node1_0.conv1.conv.weight_quantized"]


def test_fp16_and_fp32_mapping_names_dtypes_and_errors(graphs):
    gw16, gw32 = GraphWeights(graphs["fp16"]), GraphWeights(graphs["fp32"])
    w = np.ones_like(gw32.initial["node1_0.conv1.conv.weight"])
    assert gw16.convert({"node1_0.conv1.conv.weight": w})["node1_0.conv1.conv.weight"].dtype == np.float16
    assert gw32.convert({"node1_0.conv1.conv.weight": w})["node1_0.conv1.conv.weight"].dtype == np.float32
    assert "node1_0.conv1.conv.weight" in gw32.names() and "node1_0.conv1.conv.weight" in GraphWeights(graphs["int8"]).names()
    with pytest.raises(ValidationError, match="node9_9.conv.weight"):
        gw32.convert({"node9_9.conv.weight": w})
    with pytest.raises(ValidationError, match="shape"):
        gw32.convert({"node1_0.conv1.conv.weight": w[:1]})


def test_array_reader_feeds_and_rewinds():
    r = ArrayReader(np.zeros((3, 3, 4, 4), np.float32))
    feeds = [r.get_next() for _ in range(4)]
    assert [f["image"].shape for f in feeds[:3]] == [(1, 3, 4, 4)] * 3 and feeds[3] is None
    r.rewind()
    assert r.get_next() is not None
    with pytest.raises(ValidationError, match="non-empty"):
        ArrayReader(np.zeros((0, 3, 4, 4)))


def test_uint8_activation_variant_for_ort_cpu(graphs, tmp_path, x):
    import onnx
    from onnx import numpy_helper

    out = quantize_int8(graphs["fp32"], tmp_path / "u8.onnx", None, cache_path=graphs["dir"] / "ranges.json",
                        activations="uint8")
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    assert {v.dtype for k, v in inits.items() if k.endswith("zero_point") and "weight" not in k} == {np.dtype(np.uint8)}
    ref, got = run(graphs["fp32"], x), run(out, x)
    assert all(rel_error(ref[k], got[k]) < INT8_REL_ERROR for k in ref)
    with pytest.raises(ValidationError, match="activation type 'fp8'"):
        quantize_int8(graphs["fp32"], tmp_path / "bad.onnx", None, activations="fp8")
