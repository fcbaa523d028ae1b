"""ONNX export of topology graphs and of the controller (hypernets).

A topology graph has one input ``image`` [batch, 3, H, W] float32 in [0, 1] (dynamic batch,
mean/std normalization inside) and one output per task, named after the task. Its
initializers carry stable, meaningful names — the module path of each conv: the folded
conv of slot ``node3_1.conv1`` is ``node3_1.conv1.conv.weight`` / ``.conv.bias``, heads
``head_<task>.…`` — so a runtime can bind another preference's weights by name and
TensorRT can refit them (DESIGN.md §6).

The classic TorchScript exporter (``dynamo=False``) is used: it is ~10x faster than the
dynamo exporter for these small graphs and keeps parameter names. It does, however,
deduplicate initializers with equal values (e.g. two zero biases), which would make two
slots share one tensor and break binding by name. :func:`_restore_conv_initializers`
therefore re-attaches every Conv's weight/bias as its own initializer, named by the
module path the exporter records in the node name (``/node3_1/conv1/conv/Conv``), with the
values taken from the module itself. Graph-surgeon constant folding only touches
shape arithmetic, never those initializers (checked by the tests).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.utils.io import atomic_path

OPSET = 17
# onnx 1.23 writes IR 14; onnxruntime 1.31 accepts up to IR 10 (opset 17 needs IR >= 8).
IR_VERSION = 10
INPUT_NAME = "image"


def _classic_export(module: nn.Module, args: tuple, path: Path, input_names: Sequence[str],
                    output_names: Sequence[str], dynamic_axes: dict) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")   # the legacy-exporter deprecation notice, every call
        torch.onnx.export(module, args, str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def _restore_conv_initializers(graph, module: nn.Module) -> None:
    """Give every Conv node its own initializers named ``<module path>.weight/.bias``."""
    import onnx_graphsurgeon as gs

    convs = {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    seen = set()
    for node in graph.nodes:
        if node.op != "Conv":
            continue
        path = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        conv = convs.get(path)
        if conv is None or path in seen:
            raise RuntimeError(f"cannot map ONNX node {node.name!r} to a Conv2d module of the tree")
        seen.add(path)
        node.inputs[1] = gs.Constant(f"{path}.weight", conv.weight.detach().cpu().numpy().astype(np.float32))
        if conv.bias is not None:
            bias = gs.Constant(f"{path}.bias", conv.bias.detach().cpu().numpy().astype(np.float32))
            if len(node.inputs) > 2:
                node.inputs[2] = bias
            else:
                node.inputs.append(bias)
    missing = set(convs) - seen
    if missing:
        raise RuntimeError(f"convs missing from the exported graph: {sorted(missing)[:3]}")


def _finish(model_path: Path, out_path: Path, fold: bool, module: nn.Module | None = None) -> None:
    """Shape-infer, fold shape arithmetic, restore names, clean, check, save with IR 10."""
    import onnx
    import onnx_graphsurgeon as gs
    import onnxruntime as ort

    ort.set_default_logger_severity(3)     # graph-surgeon folds through ORT; keep it quiet
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    graph = gs.import_onnx(model)
    if module is not None:
        _restore_conv_initializers(graph, module)
    if fold:
        for _ in range(2):                 # a second pass folds what the first exposed
            graph.fold_constants(fold_shapes=True).cleanup().toposort()
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = IR_VERSION
    out.producer_name = "dymu-rt"
    del out.opset_import[:]
    out.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    onnx.checker.check_model(out, full_check=True)
    onnx.save(out, str(out_path))


@torch.no_grad()
def export_tree(tree: nn.Module, path: str | Path, input_size: tuple[int, int],
                task_names: Sequence[str]) -> Path:
    """Export a (folded) materialized tree to ``path`` atomically; returns ``path``."""
    path = Path(path)
    h, w = input_size
    x = torch.rand(1, 3, h, w)
    axes = {INPUT_NAME: {0: "batch"}, **{t: {0: "batch"} for t in task_names}}
    with atomic_path(path) as tmp:
        _classic_export(tree, (x,), tmp, [INPUT_NAME], task_names, axes)
        _finish(tmp, tmp, fold=True, module=tree)
    return path


class _PreferenceWrapper(nn.Module):
    """Adapts a hypernet (called as the trainer calls it: r [N], c []) to the bundle's
    controller signature (r [1, N], c [1, 1])."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(r[0], c[0, 0])


@torch.no_grad()
def export_hypernet(net: nn.Module, n_tasks: int, path: str | Path, output_name: str) -> Path:
    """Export a hypernet with inputs ``r`` [1, N] and ``c`` [1, 1] float32, atomically.

    Uses ``dymu_rt.control.hypernets.export_onnx`` when the control package provides one,
    so the controller has a single exporter; otherwise exports here.
    """
    path = Path(path)
    r = torch.full((1, n_tasks), 1.0 / n_tasks)
    c = torch.full((1, 1), 0.5)
    with atomic_path(path) as tmp:
        helper = None
        with contextlib.suppress(ImportError):
            from dymu_rt.control.hypernets import export_onnx as helper  # type: ignore
        if helper is not None:
            helper(net, tmp)
        else:
            _classic_export(_PreferenceWrapper(net.eval()), (r, c), tmp, ["r", "c"], [output_name], {})
        _finish(tmp, tmp, fold=False)
    return path
