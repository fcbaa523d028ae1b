"""A tiny bundle written exactly per docs/INTERFACES.md ("Bundle", schema 1), for runtime tests.

A plain module (no pytest) so the binding benchmark can use it too
(``sys.path.insert(0, "tests/runtime")``). The model is a 3-task, 3-layer tree of
conv+BN+ReLU nodes (8 channels, 16x16 input) with one 1x1 conv head per task; every node BN
is modulated. :class:`FixtureNet` is the torch reference (unfolded BN, deltas applied);
the bundle's graphs are written with ``onnx.helper`` from the same tensors with BN folded
at each topology's first grid point, so a runtime that binds another point's weights
correctly reproduces the reference exactly (up to float error).

The hypernets are single linear maps of [r, c] (logits get an identity prior so the
identity tree wins near uniform r); their numpy references are :func:`edge_logits` and
:func:`weight_deltas`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

N, L, C, HW = 3, 3, 8, 16
TASKS = [{"name": "semseg", "kind": "segmentation", "out_channels": 5},
         {"name": "normals", "kind": "normals", "out_channels": 3},
         {"name": "depth", "kind": "depth", "out_channels": 1}]
EPS = 1e-5
SALT = "fixture"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def slot_name(layer: int, stream: int) -> str:
    """BN slot of node (layer, stream): the module path of its ConvBN."""
    return f"node{layer}_{stream}.conv"


def bn_layout() -> list[dict]:
    out, offset = [], 0
    for l in range(L):
        for j in range(N):
            out.append({"name": slot_name(l, j), "layer": l, "stream": j, "channels": C, "offset": offset})
            offset += 2 * C
    return out


D = 2 * C * N * L


def make_params(seed: int = 0) -> dict[str, np.ndarray]:
    """All raw tensors: fold_params keys per slot plus head weights and the hypernets."""
    rng = np.random.default_rng(seed)
    p: dict[str, np.ndarray] = {}
    for s in bn_layout():
        cin = 3 if s["layer"] == 0 else C
        n = s["name"]
        p[f"{n}.weight"] = rng.normal(0, 0.4, (C, cin, 3, 3)).astype(np.float32)
        p[f"{n}.conv_bias"] = rng.normal(0, 0.1, C).astype(np.float32)
        p[f"{n}.bn_weight"] = rng.uniform(0.5, 1.5, C).astype(np.float32)
        p[f"{n}.bn_bias"] = rng.normal(0, 0.1, C).astype(np.float32)
        p[f"{n}.bn_mean"] = rng.normal(0, 0.2, C).astype(np.float32)
        p[f"{n}.bn_var"] = rng.uniform(0.5, 2.0, C).astype(np.float32)
    for t in TASKS:
        p[f"head_{t['name']}.weight"] = rng.normal(0, 0.4, (t["out_channels"], C, 1, 1)).astype(np.float32)
        p[f"head_{t['name']}.bias"] = rng.normal(0, 0.1, t["out_channels"]).astype(np.float32)
    p["edge.W"] = rng.normal(0, 2.0, (N + 1, (L - 1) * N * N)).astype(np.float32)
    p["edge.b"] = (np.tile(np.eye(N, dtype=np.float32), (L - 1, 1, 1)).reshape(-1) * 1.0)
    p["weight.W"] = rng.normal(0, 0.3, (N + 1, D)).astype(np.float32)
    p["weight.b"] = rng.normal(0, 0.05, D).astype(np.float32)
    return p


def edge_logits(p, r, c) -> np.ndarray:
    x = np.asarray(list(r) + [c], np.float32)
    return (x @ p["edge.W"] + p["edge.b"]).reshape(L - 1, N, N)


def weight_deltas(p, r, c) -> np.ndarray:
    x = np.asarray(list(r) + [c], np.float32)
    return (x @ p["weight.W"] + p["weight.b"]).astype(np.float32)


def tree_of(p, r, c) -> np.ndarray:
    """Canonical parent table the bundle's edge hypernet gives for (r, c)."""
    from dymu_rt.core.tree import canonicalize

    table = np.empty((L, N), np.int64)
    table[0] = np.arange(N)
    table[1:] = edge_logits(p, r, c).argmax(-1)
    return canonicalize(table)


class FixtureNet:
    """Torch reference: runs any tree with modulated (unfolded) BN."""

    def __init__(self, params: dict[str, np.ndarray]):
        self.p = {k: torch.from_numpy(v) for k, v in params.items()}

    @torch.no_grad()
    def __call__(self, x: np.ndarray, parents, deltas: np.ndarray) -> dict[str, np.ndarray]:
        from dymu_rt.core.tree import used_nodes

        parents = np.asarray(parents)
        used = used_nodes(parents)
        d = torch.from_numpy(np.asarray(deltas, np.float32))
        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        outs: dict[tuple[int, int], torch.Tensor] = {}
        for s in bn_layout():
            l, j, n, o = s["layer"], s["stream"], s["name"], s["offset"]
            if not used[l, j]:
                continue
            inp = x if l == 0 else outs[(l - 1, int(parents[l, j]))]
            y = F.conv2d(inp, self.p[f"{n}.weight"], self.p[f"{n}.conv_bias"], padding=1)
            y = F.batch_norm(y, self.p[f"{n}.bn_mean"], self.p[f"{n}.bn_var"],
                             self.p[f"{n}.bn_weight"] + d[o:o + C], self.p[f"{n}.bn_bias"] + d[o + C:o + 2 * C],
                             False, 0.0, EPS)
            outs[(l, j)] = F.relu(y)
        return {t["name"]: F.conv2d(outs[(L - 1, i)], self.p[f"head_{t['name']}.weight"],
                                    self.p[f"head_{t['name']}.bias"]).numpy()
                for i, t in enumerate(TASKS)}


def fold(p, name: str, deltas: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    g = p[f"{name}.bn_weight"] + deltas[offset:offset + C]
    b = p[f"{name}.bn_bias"] + deltas[offset + C:offset + 2 * C]
    s = g / np.sqrt(p[f"{name}.bn_var"] + EPS)
    return ((p[f"{name}.weight"] * s[:, None, None, None]).astype(np.float32),
            (b + (p[f"{name}.conv_bias"] - p[f"{name}.bn_mean"]) * s).astype(np.float32))


def topology_graph(p, parents, deltas):
    """ONNX model of one tree, BN folded at ``deltas``, stable initializer names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dymu_rt.core.tree import used_nodes

    used = used_nodes(parents)
    nodes, inits = [], []
    for s in bn_layout():
        l, j, n = s["layer"], s["stream"], s["name"]
        if not used[l, j]:
            continue
        w, b = fold(p, n, deltas, s["offset"])
        inits += [numpy_helper.from_array(w, f"{n}.conv.weight"), numpy_helper.from_array(b, f"{n}.conv.bias")]
        src = "image" if l == 0 else f"node{l - 1}_{int(parents[l, j])}"
        nodes.append(helper.make_node("Conv", [src, f"{n}.conv.weight", f"{n}.conv.bias"], [f"{n}_y"],
                                      name=f"/{n.replace('.', '/')}/conv/Conv", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"{n}_y"], [f"node{l}_{j}"]))
    outputs = []
    for i, t in enumerate(TASKS):
        h = f"head_{t['name']}"
        inits += [numpy_helper.from_array(p[f"{h}.weight"], f"{h}.weight"),
                  numpy_helper.from_array(p[f"{h}.bias"], f"{h}.bias")]
        nodes.append(helper.make_node("Conv", [f"node{L - 1}_{i}", f"{h}.weight", f"{h}.bias"], [t["name"]],
                                      name=f"/{h}/Conv"))
        outputs.append(helper.make_tensor_value_info(t["name"], TensorProto.FLOAT,
                                                     ["batch", t["out_channels"], HW, HW]))
    graph = helper.make_graph(nodes, "fixture_tree",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, HW, HW])],
                              outputs, inits)
    return _model(graph)


def _model(graph):
    import onnx
    from onnx import helper

    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dymu-rt-fixture")
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def hypernet_graph(W: np.ndarray, b: np.ndarray, out_name: str, out_shape: list[int]):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Concat", ["r", "c"], ["rc"], axis=1),
             helper.make_node("MatMul", ["rc", "W"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Reshape", ["hb", "shape"], [out_name])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.asarray(out_shape, np.int64), "shape")]
    graph = helper.make_graph(nodes, out_name,
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, N]),
                               helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], inits)
    return _model(graph)


def tree_cost(parents) -> tuple[int, int]:
    """(params, macs) of a tree: used node convs plus the heads."""
    from dymu_rt.core.tree import used_nodes

    used = used_nodes(parents)
    params = macs = 0
    for s in bn_layout():
        if used[s["layer"], s["stream"]]:
            cin = 3 if s["layer"] == 0 else C
            params += C * cin * 9 + C
            macs += C * cin * 9 * HW * HW
    for t in TASKS:
        params += t["out_channels"] * (C + 1)
        macs += t["out_channels"] * C * HW * HW
    return params, macs


def write_bundle(out: str | Path, seed: int = 0, step: str = "0.5", c_step: str = "0.5") -> Path:
    """Write the fixture bundle at ``out``; returns ``out``."""
    import onnx
    from safetensors.numpy import save_file

    from dymu_rt.core.preference import grid
    from dymu_rt.core.tree import topology_id
    from dymu_rt.core.io import atomic_write_json, sha256_file

    out = Path(out)
    (out / "graphs").mkdir(parents=True, exist_ok=True)
    (out / "controller").mkdir(parents=True, exist_ok=True)
    p = make_params(seed)
    points, topologies = [], {}
    layout = bn_layout()
    for pref in grid(N, step, c_step):
        parents = tree_of(p, pref.r, pref.c)
        tid = topology_id(parents, SALT)
        points.append({"r": list(pref.r), "c": pref.c, "topology": tid})
        if tid in topologies:
            topologies[tid]["n_points"] += 1
            continue
        rel = f"graphs/{tid}.onnx"
        onnx.save(topology_graph(p, parents, weight_deltas(p, pref.r, pref.c)), str(out / rel))
        params, macs = tree_cost(parents)
        from dymu_rt.core.tree import used_nodes
        used = used_nodes(parents)
        topologies[tid] = {"parents": parents.tolist(), "params": params, "macs": macs, "gmacs": macs / 1e9,
                           "file": rel, "sha256": sha256_file(out / rel), "n_points": 1,
                           "bn_slots": [s["name"] for s in layout if used[s["layer"], s["stream"]]],
                           "exported_at": {"r": list(pref.r), "c": pref.c}}
    ctrl = {}
    onnx.save(hypernet_graph(p["edge.W"], p["edge.b"], "logits", [L - 1, N, N]), str(out / "controller/edge_hypernet.onnx"))
    onnx.save(hypernet_graph(p["weight.W"], p["weight.b"], "deltas", [D]), str(out / "controller/weight_hypernet.onnx"))
    fold_keys = {k: v for k, v in p.items() if k.startswith("node")}
    save_file(fold_keys, str(out / "controller/fold_params.safetensors"))
    for key, rel in (("edge_hypernet", "controller/edge_hypernet.onnx"),
                     ("weight_hypernet", "controller/weight_hypernet.onnx"),
                     ("fold_params", "controller/fold_params.safetensors")):
        ctrl[key] = {"file": rel, "sha256": sha256_file(out / rel)}
    manifest = {
        "schema_version": 3, "kind": "dymu-rt-bundle",
        "producer": {"dymu_rt": "fixture", "onnx": onnx.__version__},
        "preset": "fixture", "trained_on": "none", "tasks": TASKS,
        "preprocessing": {"input_size": [HW, HW], "color": "RGB", "scale": 1 / 255, "mean": MEAN, "std": STD,
                          "normalize_in_graph": False},
        "grid": {"step": float(step), "c_step": float(c_step), "n_points": len(points)},
        "topology_salt": SALT, "num_layers": L, "bn_delta_size": D,
        "points": points, "topologies": topologies, "controller": ctrl,
        "bn_layout": layout, "bn_eps": EPS, "latency": {}, "engines": {},
    }
    atomic_write_json(out / "manifest.json", manifest)
    from dymu_rt.bundle.checksum import write_checksum

    write_checksum(out)             # as dymu-rt writes bundles (one without a checksum is refused)
    return out


def read_manifest(bundle: Path) -> dict:
    return json.loads((Path(bundle) / "manifest.json").read_text())


if __name__ == "__main__":
    import sys

    print(write_bundle(sys.argv[1] if len(sys.argv) > 1 else "/tmp/dymu-fixture-bundle"))
