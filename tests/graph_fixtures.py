"""Tiny ONNX graphs and fixture bundles shared by the backend and compile tests."""

from pathlib import Path

import numpy as np
import torch

from dymu_rt.core.io import atomic_write_json, sha256_file


class _ConvReLU(torch.nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride, 1)      # BN already folded: biased conv

    def forward(self, x):
        return torch.relu(self.conv(x))


class TinyMultiTaskNet(torch.nn.Module):
    """Two streams sharing a stem, residual blocks, an ASPP-like pooled branch, upsampling heads:
    the op mix of a topology graph (Sub/Div, Conv, Relu, Add, MaxPool, GlobalAveragePool,
    Concat, Resize) with stable names ``node<l>_<j>.<unit>.conv.weight``."""

    def __init__(self, width=8):
        super().__init__()
        w = width
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.node0_0 = torch.nn.ModuleDict({"conv1": _ConvReLU(3, w, 2)})
        self.node1_0 = torch.nn.ModuleDict({"conv1": _ConvReLU(w, w), "conv2": _ConvReLU(w, w)})
        self.node1_1 = torch.nn.ModuleDict({"conv1": _ConvReLU(w, w), "conv2": _ConvReLU(w, w)})
        self.node2_1 = torch.nn.ModuleDict({"conv1": _ConvReLU(w, 2 * w, 2)})
        self.head_semseg = torch.nn.Conv2d(w, 5, 1)
        self.head_depth = torch.nn.Conv2d(4 * w, 1, 1)

    def forward(self, image):
        x = (image - self.mean) / self.std
        x = torch.nn.functional.max_pool2d(self.node0_0["conv1"](x), 3, 1, 1)
        a = x + self.node1_0["conv2"](self.node1_0["conv1"](x))
        b = x + self.node1_1["conv2"](self.node1_1["conv1"](x))
        c = self.node2_1["conv1"](b)
        pooled = torch.nn.functional.adaptive_avg_pool2d(c, 1).expand_as(c)
        size = image.shape[-2:]
        seg = torch.nn.functional.interpolate(self.head_semseg(a), size=size, mode="bilinear")
        dep = self.head_depth(torch.cat([c, pooled], 1))
        return seg, torch.nn.functional.interpolate(dep, size=size, mode="bilinear")


def export_tiny_graph(path: Path, seed: int = 0, size: int = 32) -> Path:
    """Export :class:`TinyMultiTaskNet` (random weights) like a topology graph: input ``image``
    [batch, 3, size, size] with a dynamic batch, outputs ``semseg`` and ``depth``, IR 10."""
    import contextlib
    import io
    import warnings

    import onnx

    torch.manual_seed(seed)
    net = TinyMultiTaskNet().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(-0.2, 0.2)
    path = Path(path)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 3, size, size),), str(path), input_names=["image"],
                          output_names=["semseg", "depth"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "semseg": {0: "batch"}, "depth": {0: "batch"}})
    model = onnx.load(str(path))
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _stub_hypernet(path: Path, output: str) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["r", "c"], [output])], "stub",
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 2]),
                               helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path.write_bytes(model.SerializeToString())


def make_bundle(root: Path, n_topologies: int = 2) -> Path:
    """A bundle per docs/INTERFACES.md with tiny graphs (until the real build is used here)."""
    (root / "graphs").mkdir(parents=True)
    (root / "controller").mkdir(parents=True)
    for f, out in (("edge_hypernet.onnx", "logits"), ("weight_hypernet.onnx", "deltas")):
        # stand-ins (calibration never runs them), but real graphs with the declared
        # inputs/outputs: a bundle's graph content is checked when it is opened
        _stub_hypernet(root / "controller" / f, out)
    # Calibration reads (and verifies) fold_params: schema 3 derives raw conv weights and the
    # anchor BN feeds from it. These graphs hold their own weights and have no modulated slot.
    from safetensors.numpy import save_file

    save_file({}, str(root / "controller" / "fold_params.safetensors"))
    topologies = {}
    for i in range(n_topologies):
        tid = f"{i:02d}" * 8                  # a topology id: hex digits
        export_tiny_graph(root / "graphs" / f"{tid}.onnx", seed=i)
        topologies[tid] = {"parents": [[0, 1]], "params": 0, "macs": 0, "gmacs": 0.0, "file": f"graphs/{tid}.onnx",
                           "sha256": sha256_file(root / "graphs" / f"{tid}.onnx"), "n_points": 1, "bn_slots": []}
    manifest = {"schema_version": 3, "kind": "dymu-rt-bundle", "producer": {}, "preset": "fixture",
                "tasks": [{"name": "semseg", "kind": "segmentation", "out_channels": 5},
                          {"name": "depth", "kind": "depth", "out_channels": 1}],
                "preprocessing": {"input_size": [32, 32], "color": "RGB", "scale": 1 / 255,
                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                  "normalize_in_graph": True},
                "grid": {"step": 0.5, "c_step": 1.0, "n_points": 2},
                "points": [{"r": [1.0, 0.0], "c": 0.0, "topology": "0000000000000000"}], "topologies": topologies,
                "controller": {k: {"file": f"controller/{f}", "sha256": sha256_file(root / "controller" / f)}
                               for k, f in
                               (("edge_hypernet", "edge_hypernet.onnx"), ("weight_hypernet", "weight_hypernet.onnx"),
                                ("fold_params", "fold_params.safetensors"))},
                "bn_layout": [], "bn_eps": 1e-5, "topology_salt": "x",
                "latency": {}, "engines": {}}
    atomic_write_json(root / "manifest.json", manifest)
    from dymu_rt.bundle.checksum import write_checksum

    write_checksum(root)             # as dymu-rt writes bundles (one without a checksum is refused)
    return root


def write_images(folder: Path, n: int = 6) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder
