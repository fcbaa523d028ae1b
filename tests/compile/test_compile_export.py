"""ONNX export of topology graphs: equals torch, stable names, binding by name works."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from dymu_rt.compile.architecture import materialize, slots_of
from dymu_rt.compile.export import IR_VERSION, OPSET, export_tree
from dymu_rt.compile.fold_modules import fold_bn, fold_params
from dymu_rt.core.bn_fold import slot_weights
from dymu_rt.core.tree import identity_table


def _tree(anchor):
    p = identity_table(anchor.num_layers, anchor.num_tasks)
    p[3] = [0, 0, 2]          # streams 0/1 share layers 0-2: a cross-task edge
    p[7] = [0, 2, 2]          # tasks 1, 2 share layers 3-6 of stream 2
    return p


def _deltas(anchor, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0, 0.3, anchor.bn_delta_size).astype(np.float32))


def _export(anchor, parents, deltas, path):
    tree = fold_bn(materialize(anchor, parents, deltas))
    export_tree(tree, path, anchor.input_size, anchor.task_names)
    return tree


def _run(model_or_path, x):
    data = model_or_path if isinstance(model_or_path, bytes) else open(model_or_path, "rb").read()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})


@pytest.fixture(scope="module")
def exported(tiny_anchor, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    p = _tree(tiny_anchor)
    ta = _export(tiny_anchor, p, _deltas(tiny_anchor, 0), d / "a.onnx")
    tb = _export(tiny_anchor, p, _deltas(tiny_anchor, 1), d / "b.onnx")
    return p, d / "a.onnx", ta, d / "b.onnx", tb


def test_graph_contract_and_equals_torch(tiny_anchor, exported):
    _, a, tree, _, _ = exported
    model = onnx.load(str(a))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert {o.domain: o.version for o in model.opset_import}[""] >= OPSET
    assert [i.name for i in model.graph.input] == ["image"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert [o.name for o in model.graph.output] == tiny_anchor.task_names
    x = torch.rand(3, 3, 32, 32)          # batch 3: the batch axis is dynamic
    ref = tree(x)
    for o, r in zip(_run(str(a), x.numpy()), ref):
        assert o.shape == tuple(r.shape)
        assert np.abs(o - r.numpy()).max() <= 1e-4 * max(1.0, float(r.abs().max()))


def test_initializer_names_stable_across_preferences(tiny_anchor, exported):
    p, a, _, b, _ = exported
    ia = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(a)).graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(b)).graph.initializer}
    assert list(ia) == list(ib)
    slots = [s.name for s in slots_of(tiny_anchor, p)]
    for s in slots:
        for suffix in (".conv.weight", ".conv.bias"):
            assert s + suffix in ia
            assert ia[s + suffix].shape == ib[s + suffix].shape
    assert any(not np.array_equal(ia[s + ".conv.bias"], ib[s + ".conv.bias"]) for s in slots)
    assert any(n.startswith("head_semseg.") for n in ia)
    # Only modulated slots depend on the preference (light decoder heads have some: their
    # BNs are modulated; the classifier and the shared stem never are).
    slot_inits = {s + suffix for s in slots for suffix in (".conv.weight", ".conv.bias")}
    assert any(n.startswith("head_") for n in slot_inits)
    assert all(np.array_equal(ia[n], ib[n]) for n in ia if n not in slot_inits)
    assert any(n.startswith("stem.") for n in ia)


def test_bind_by_name_equals_export_at_other_preference(tiny_anchor, exported):
    p, a, _, b, _ = exported
    params = {k: v.numpy() for k, v in fold_params(tiny_anchor).items()}
    layout = [{"name": s.name, "channels": s.channels, "offset": s.offset} for s in tiny_anchor.bn_layout]
    bound = slot_weights(params, layout, _deltas(tiny_anchor, 1).numpy(), 1e-5,
                              [s.name for s in slots_of(tiny_anchor, p)])
    model = onnx.load(str(a))
    replaced = 0
    for init in model.graph.initializer:
        if init.name in bound:
            init.CopyFrom(numpy_helper.from_array(bound[init.name], init.name))
            replaced += 1
    assert replaced == len(bound)
    x = np.random.default_rng(5).random((2, 3, 32, 32), dtype=np.float32)
    out_bound = _run(model.SerializeToString(), x)
    out_b = _run(str(b), x)
    out_a = _run(str(a), x)
    for ob, oref, oa in zip(out_bound, out_b, out_a):
        scale = max(1.0, float(np.abs(oref).max()))
        assert np.abs(ob - oref).max() <= 1e-4 * scale
        assert np.abs(oa - oref).max() > 1e-3 * scale    # the preferences really differ


class _Nested(torch.nn.Module):
    """Convs inside a Sequential (scope ``stem/stem.0/conv``) and a ModuleList that is
    indexed, never called (scope ``branches.0``): the MobileNetV2 / ASPP layouts."""

    def __init__(self):
        super().__init__()
        from dymu_rt.models.layers import ConvBN

        self.stem = torch.nn.Sequential(ConvBN(3, 4, 3), torch.nn.ReLU(), ConvBN(4, 4, 1))
        self.branches = torch.nn.ModuleList([torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 4, 3, padding=1)])

    def forward(self, x):
        h = self.stem(x)
        return (self.branches[0](h) + self.branches[1](h),)


def test_nested_module_paths_name_their_initializers(tmp_path):
    torch.manual_seed(0)
    net = fold_bn(_Nested().eval())
    export_tree(net, tmp_path / "n.onnx", (8, 8), ["out"])
    names = {i.name for i in onnx.load(str(tmp_path / "n.onnx")).graph.initializer}
    assert {"stem.0.conv.weight", "stem.2.conv.bias", "branches.0.weight", "branches.1.bias"} <= names
    x = torch.rand(1, 3, 8, 8)
    out = _run(str(tmp_path / "n.onnx"), x.numpy())[0]
    np.testing.assert_allclose(out, net(x)[0].detach().numpy(), atol=1e-5, rtol=1e-5)
