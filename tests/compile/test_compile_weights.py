"""The shared weight file: graphs at the anchor, tensors stored once, bound by name.

Bundle size must grow with topologies only by graph structure: every graph references
``graphs/weights.bin`` (ONNX external data) instead of embedding a weight copy.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file

from dymu_rt.bundle import layout as B
from dymu_rt.compile.architecture import materialize, preference_tensors
from dymu_rt.compile.build import write_anchor_store
from dymu_rt.methods import build_bundle
from dymu_rt.compile.export import export_tree
from dymu_rt.compile.fold_modules import fold_bn
from dymu_rt.core.bn_fold import slot_weights
from dymu_rt.compile.weights import ALIGN, read_tensor

X = np.random.default_rng(7).random((2, 3, 32, 32), dtype=np.float32)


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from dymu_rt.run.layout import RunDir

    _, anchor, edge, weight = RunDir(tiny_run).load_all()
    return anchor, edge, weight


@pytest.fixture(scope="module")
def bundles(tiny_run, tmp_path_factory):
    """The same run built at two grids: fewer and more topologies."""
    d = tmp_path_factory.mktemp("weights")
    small = build_bundle(tiny_run, d / "small", step="0.5", c_step="1", progress=False)
    large = build_bundle(tiny_run, d / "large", step="0.5", progress=False)
    return (d / "small", small), (d / "large", large)


def _session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, so=None):
    so = so or ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _close(outs, refs):
    for o, r in zip(outs, refs, strict=True):
        r = r.detach().numpy() if isinstance(r, torch.Tensor) else r
        assert o.shape == r.shape
        assert np.abs(o - r).max() <= 1e-4 * max(1.0, float(np.abs(r).max()))


def _external(model):
    return {i.name: {e.key: e.value for e in i.external_data} for i in model.graph.initializer
            if i.data_location == onnx.TensorProto.EXTERNAL}


def test_size_independent_of_topology_count(bundles, loaded):
    (small, s), (large, l) = bundles
    assert l["topologies"] > s["topologies"] >= 2
    ms, ml = B.verify_bundle(small).to_dict(), B.verify_bundle(large).to_dict()
    # One weight file, identical whatever the grid: the anchor's tensors, once.
    assert ms["weights"]["sha256"] == ml["weights"]["sha256"]
    anchor = loaded[0]
    from dymu_rt.core.tree import identity_table

    full = fold_bn(materialize(anchor, identity_table(anchor.num_layers, anchor.num_tasks)))
    params = [p.numel() * p.element_size() for p in full.parameters()]
    assert sum(params) <= ml["weights"]["bytes"] <= sum(params) + ALIGN * len(params)
    # Each extra topology adds graph structure only: a few percent of the weights.
    graph_bytes = [(large / t["file"]).stat().st_size for t in ml["topologies"].values()]
    assert max(graph_bytes) < min(128 * 1024, ml["weights"]["bytes"] // 10)
    per_topology = (l["bundle_bytes"] - s["bundle_bytes"]) / (l["topologies"] - s["topologies"])
    assert 0 < per_topology < 128 * 1024
    # Before the weight file, a bundle held a weight copy per topology.
    assert l["bundle_bytes"] < ml["weights"]["bytes"] * 4 < ml["weights"]["bytes"] * l["topologies"]


def test_graphs_load_by_path_and_reference_the_shared_file(bundles):
    (_, _), (root, _) = bundles
    m = B.verify_bundle(root).to_dict()
    index = m["weights"]["tensors"]
    size = m["weights"]["bytes"]
    seen: dict[str, tuple] = {}
    for tid, t in m["topologies"].items():
        path = root / t["file"]
        onnx.checker.check_model(str(path), full_check=True)       # path form: external data checked
        model = onnx.load(str(path), load_external_data=False)
        assert dict((p.key, p.value) for p in model.metadata_props)["dymu_rt.weights_sha256"] == \
            m["weights"]["sha256"]
        ext = _external(model)
        for slot in t["bn_slots"]:                                   # every bindable tensor is external
            assert {f"{slot}.conv.weight", f"{slot}.conv.bias"} <= set(ext)
        assert any(n.startswith("head_") for n in ext)
        for name, e in ext.items():
            assert e["location"] == "weights.bin"
            ref = (int(e["offset"]), int(e["length"]))
            assert ref == (index[name]["offset"], index[name]["length"])
            assert ref[0] % ALIGN == 0 and ref[0] + ref[1] <= size
            assert seen.setdefault(name, ref) == ref                 # same name, same bytes, every graph
        inline = [i for i in model.graph.initializer if i.data_location != onnx.TensorProto.EXTERNAL]
        assert all(len(i.raw_data) < 1024 for i in inline)
    # onnx.load(path) pulls the data in; the index reads the same values without onnx.
    model = onnx.load(str(root / next(iter(m["topologies"].values()))["file"]))
    for init in list(model.graph.initializer)[:20]:
        if init.name in index:
            np.testing.assert_array_equal(read_tensor(root, m["weights"], init.name),
                                          onnx.numpy_helper.to_array(init))


def test_graphs_equal_the_torch_tree_at_zero_deltas(bundles, loaded):
    anchor = loaded[0]
    (_, _), (root, _) = bundles
    m = B.read_manifest(root).to_dict()
    for t in list(m["topologies"].values())[:4]:
        ref = materialize(anchor, np.asarray(t["parents"]))(torch.from_numpy(X))
        _close(_session(root / t["file"]).run(None, {"image": X}), ref)


def _point_weights(root, m, loaded, point):
    anchor, _, weight = loaded
    rt, ct = preference_tensors(point["r"], point["c"])
    deltas = weight(rt, ct).reshape(-1).detach()
    topo = m["topologies"][point["topology"]]
    # Store once: fold_params holds no conv weight the weights file already has; the pool
    # derives the raw weights from that one copy.
    from dymu_rt.bundle.weight_pool import WeightPool

    stored = load_file(str(root / m["controller"]["fold_params"]["file"]))
    assert not any(k.endswith(".weight") and not k.endswith(".bn_weight") for k in stored)
    params = WeightPool(root, m["weights"], stored, m["bn_eps"]).fold_params()
    bound = slot_weights(params, m["bn_layout"], deltas.numpy(), m["bn_eps"], topo["bn_slots"])
    ref = materialize(anchor, np.asarray(topo["parents"]), deltas)(torch.from_numpy(X))
    return topo, bound, ref


def test_binding_a_preference_by_name_gives_its_torch_output(bundles, loaded):
    (_, _), (root, _) = bundles
    m = B.read_manifest(root).to_dict()
    for point in m["points"][1::7]:
        topo, bound, ref = _point_weights(root, m, loaded, point)
        path = root / topo["file"]
        # The graph alone holds the anchor's weights, not this point's.
        unbound = _session(path).run(None, {"image": X})
        assert max(np.abs(o - r.detach().numpy()).max() for o, r in zip(unbound, ref)) > 1e-3
        # (a) replace the initializers of the loaded model, run from bytes.
        model = onnx.load(str(path))
        replaced = 0
        for init in model.graph.initializer:
            if init.name in bound:
                init.CopyFrom(onnx.numpy_helper.from_array(bound[init.name], init.name))
                replaced += 1
        assert replaced == len(bound)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        _close(sess.run(None, {"image": X}), ref)
        # (b) ORT's add_external_initializers on the graph by path, fully optimized.
        so = ort.SessionOptions()
        names = sorted(bound)
        values = [ort.OrtValue.ortvalue_from_numpy(bound[n]) for n in names]
        so.add_external_initializers(names, values)
        _close(_session(path, so=so).run(None, {"image": X}), ref)


def test_a_graph_not_at_the_anchor_is_refused(loaded, tmp_path):
    anchor = loaded[0]
    store = write_anchor_store(anchor, tmp_path / "weights.bin")
    from dymu_rt.core.tree import identity_table

    parents = identity_table(anchor.num_layers, anchor.num_tasks)
    deltas = torch.full((anchor.bn_delta_size,), 0.1)
    tree = fold_bn(materialize(anchor, parents, deltas))
    with pytest.raises(RuntimeError, match="differs from the anchor's stored tensor"):
        export_tree(tree, tmp_path / "g.onnx", anchor.input_size, anchor.task_names, store=store)
    assert not (tmp_path / "g.onnx").exists()


def test_rewritten_weight_file_with_new_contents_invalidates_graphs(loaded, tmp_path):
    """A weight file rewritten with other bytes must not be paired with graphs made against
    the old one: their journal entries are dropped so the build re-exports them."""
    from dymu_rt.compile.build import _write_weights
    from dymu_rt.core.io import sha256_file

    anchor = loaded[0]
    out = tmp_path / "b"
    (out / "graphs").mkdir(parents=True)
    (out / "graphs" / "t.onnx").write_bytes(b"graph")
    journal = {"fingerprint": "f", "files": {"graphs/t.onnx": sha256_file(out / "graphs" / "t.onnx"),
                                             B.WEIGHTS_FILE: "0" * 64, B.FOLD_PARAMS_FILE: "1" * 64}}
    store = _write_weights(out, journal, anchor)
    assert "graphs/t.onnx" not in journal["files"] and B.FOLD_PARAMS_FILE in journal["files"]
    assert journal["files"][B.WEIGHTS_FILE] == store.sha256 == sha256_file(out / B.WEIGHTS_FILE)
    on_disk = json.loads((out / B.JOURNAL).read_text())
    assert on_disk["weights"]["sha256"] == store.sha256
    # Journaled and intact: reused, not rewritten.
    mtime = (out / B.WEIGHTS_FILE).stat().st_mtime_ns
    journal["files"]["graphs/t.onnx"] = "x"
    assert _write_weights(out, journal, anchor) == store
    assert (out / B.WEIGHTS_FILE).stat().st_mtime_ns == mtime and "graphs/t.onnx" in journal["files"]


def test_parallel_build_writes_the_same_bytes(bundles, tiny_run, tmp_path):
    (small, _), _ = bundles
    s = build_bundle(tiny_run, tmp_path / "p", step="0.5", c_step="1", workers=2, progress=False)
    assert s["built"] == s["topologies"]
    ms, mp = B.verify_bundle(small), B.verify_bundle(tmp_path / "p")
    assert mp.files() == ms.files()
