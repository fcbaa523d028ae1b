"""ONNX messages without the onnx package (what the base install's ORT backend edits graphs with)."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dymu_rt.backends import onnx_proto as P
from dymu_rt.bundle.layout import default_bundle_path


@pytest.fixture(scope="module")
def graph():
    return sorted((default_bundle_path() / "graphs").glob("*.onnx"))[0]


def test_load_model_reads_external_data_like_onnx(graph):
    ours = P.load_model(graph)
    assert type(ours) is not onnx.ModelProto             # the embedded descriptor's class, not onnx's
    assert ours.SerializeToString() == onnx.load(str(graph)).SerializeToString()
    structure = P.load_model(graph, external=False)
    assert structure.SerializeToString() == onnx.load(str(graph), load_external_data=False).SerializeToString()


def test_tensor_round_trip(graph):
    model = P.load_model(graph)
    for init in list(model.graph.initializer)[:5]:
        a = P.tensor_to_array(init)
        ref = numpy_helper.to_array(onnx.TensorProto.FromString(init.SerializeToString()))
        assert np.array_equal(a, ref) and a.dtype == ref.dtype
        t = P.array_to_tensor(a, init.name, like=init)
        assert np.array_equal(numpy_helper.to_array(onnx.TensorProto.FromString(t.SerializeToString())), a)
    with pytest.raises(TypeError, match="not supported"):
        P.array_to_tensor(np.zeros(2, dtype=np.complex64), "z")
