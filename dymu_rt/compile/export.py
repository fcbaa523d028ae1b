"""ONNX export of topology graphs and of the controller (hypernets).

A topology graph has one input ``image`` [batch, 3, H, W] float32 in [0, 1] (dynamic batch,
mean/std normalization inside) and one output per task, named after the task. Its
initializers carry stable, meaningful names — the module path of each conv: the folded
conv of slot ``node3_1.conv1`` is ``node3_1.conv1.conv.weight`` / ``.conv.bias``, heads
``head_<task>.…`` — so a runtime can bind another preference's weights by name and
TensorRT can refit them (DESIGN.md §6). In a bundle the graph's tensors are not embedded:
:func:`export_tree` with a ``store`` makes them ONNX external data in the bundle's shared
weight file (:mod:`dymu_rt.compile.weights`).

The classic TorchScript exporter (``dynamo=False``) is used: it is ~10x faster than the
dynamo exporter for these small graphs and keeps parameter names. It does, however,
deduplicate initializers with equal values (e.g. two zero biases), which would make two
slots share one tensor and break binding by name. :func:`_restore_conv_initializers`
therefore re-attaches every Conv's weight/bias as its own initializer, named by the
module path the exporter records in the node name (``/node3_1/conv1/conv/Conv``; a
Sequential child appears as ``/node1_0/block/block.0/conv/Conv``, an indexed ModuleList
entry as ``/head_x/aspp/branches.0/conv/Conv``, see :func:`_module_of_scope`), with the
values taken from the module itself. Graph-surgeon constant folding only touches
shape arithmetic, never those initializers (checked by the tests).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.compile.weights import externalize
from dymu_rt.control.hypernets import export_onnx
from dymu_rt.core.io import atomic_path

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


def _unqualified(path: str) -> str:
    """A module's scope atom as the TorchScript exporter names it: its qualified name from
    the last non-numeric atom on (torch.onnx's ``_unqualified_variable_name``), e.g.
    ``block.0`` for ``node1_0.block.0``."""
    atoms = path.split(".")
    i = max((i for i, a in enumerate(atoms) if not a.isnumeric()), default=0)
    return ".".join(atoms[i:])


def _module_of_scope(scope: str, by_atom: dict[str, list[str]]) -> str | None:
    """Module path of an ONNX node scope such as ``head_semseg/aspp/branches.0/conv``.

    The scope lists the *called* modules (containers like ModuleList never appear), each by
    :func:`_unqualified`; walk down, at each step taking the shallowest descendant of the
    current module whose unqualified name is the next atom (``by_atom``: unqualified name
    -> module paths).
    """
    cur = ""
    for atom in scope.split("/"):
        prefix = f"{cur}." if cur else ""
        hits = [n for n in by_atom.get(atom, ()) if n.startswith(prefix) and n != cur]
        if not hits and re.search(r"_\d+$", atom):
            # A module called more than once (weights shared by several inputs, as in a
            # static graph) gets ``_<n>`` appended to its scope atom from the 2nd call on.
            hits = [n for n in by_atom.get(re.sub(r"_\d+$", "", atom), ()) if n.startswith(prefix) and n != cur]
        if not hits and len(by_atom.get(atom, ())) == 1:
            # A module registered under two parents is named by its first path only (an
            # alias of a shared submodule, dymu_rt.models.graph): a unique name is exact.
            hits = list(by_atom[atom])
        if not hits:
            return None
        cur = min(hits, key=lambda n: n.count("."))
    return cur


def _restore_conv_initializers(graph, module: nn.Module) -> None:
    """Give every Conv node its own initializers named ``<module path>.weight/.bias``."""
    import onnx_graphsurgeon as gs

    convs = {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    by_atom: dict[str, list[str]] = {}
    for name, _ in module.named_modules():
        if name:
            by_atom.setdefault(_unqualified(name), []).append(name)
    seen: dict[str, tuple] = {}
    for node in graph.nodes:
        if node.op != "Conv":
            continue
        path = _module_of_scope(node.name.strip("/").rsplit("/", 1)[0], by_atom)
        conv = convs.get(path)
        if conv is None:
            raise RuntimeError(f"cannot map ONNX node {node.name!r} to a Conv2d module of the tree")
        if path not in seen:
            seen[path] = (gs.Constant(f"{path}.weight", conv.weight.detach().cpu().numpy().astype(np.float32)),
                          None if conv.bias is None else
                          gs.Constant(f"{path}.bias", conv.bias.detach().cpu().numpy().astype(np.float32)))
        # A conv called several times (shared weights) reads one pair of initializers. The
        # exporter's own tensors of the same names are renamed out of the way (cleanup
        # drops them), so no two distinct tensors share a name.
        for i, new in ((1, seen[path][0]), (2, seen[path][1])):
            old = node.inputs[i] if len(node.inputs) > i else None
            if new is not None and old is not None and old is not new and old.name == new.name:
                old.name = f"{old.name}.exported"
        node.inputs[1], bias = seen[path]
        if bias is not None:
            if len(node.inputs) > 2:
                node.inputs[2] = bias
            else:
                node.inputs.append(bias)
    missing = set(convs) - set(seen)
    if missing:
        raise RuntimeError(f"convs missing from the exported graph: {sorted(missing)[:3]}")


def _finished_model(model_path: Path, fold: bool, module: nn.Module | None = None):
    """Shape-infer, fold shape arithmetic, restore names, clean, check; the model with IR 10."""
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
    return out


def _finish(model_path: Path, out_path: Path, fold: bool, module: nn.Module | None = None) -> None:
    """:func:`_finished_model`, saved (self-contained) to ``out_path``."""
    import onnx

    onnx.save(_finished_model(model_path, fold, module), str(out_path))


@torch.no_grad()
def export_tree_model(tree: nn.Module, input_size: tuple[int, int], task_names: Sequence[str]):
    """A (folded) materialized tree as a checked, self-contained ``onnx.ModelProto``."""
    h, w = input_size
    x = torch.rand(1, 3, h, w)
    axes = {INPUT_NAME: {0: "batch"}, **{t: {0: "batch"} for t in task_names}}
    with tempfile.TemporaryDirectory(prefix="dymu-export-") as d:
        raw = Path(d) / "tree.onnx"
        _classic_export(tree, (x,), raw, [INPUT_NAME], task_names, axes)
        return _finished_model(raw, fold=True, module=tree)


@torch.no_grad()
def export_tree(tree: nn.Module, path: str | Path, input_size: tuple[int, int],
                task_names: Sequence[str], store=None) -> Path:
    """Export a (folded) materialized tree to ``path`` atomically; returns ``path``.

    With ``store`` (a :class:`dymu_rt.compile.weights.TensorStore` whose file lies in
    ``path``'s folder) the large initializers reference the store instead of being
    embedded (:func:`dymu_rt.compile.weights.externalize`), and the written graph is
    checked again by path, external data included.
    """
    import onnx

    path = Path(path)
    model = export_tree_model(tree, input_size, task_names)
    with atomic_path(path) as tmp:
        if store is None:
            onnx.save(model, str(tmp))
        else:

            if not (path.parent / store.location).is_file():
                raise FileNotFoundError(f"weights file {store.location} is not next to {path}")
            externalize(model, store)
            onnx.save(model, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
    return path


@torch.no_grad()
def export_hypernet(net: nn.Module, n_tasks: int, path: str | Path, output_name: str) -> Path:
    """Export a hypernet with inputs ``r`` [1, N] and ``c`` [1, 1] float32, atomically.

    The controller has a single exporter, :func:`dymu_rt.control.hypernets.export_onnx`;
    this adds graph-surgeon cleanup and the full checker. ``n_tasks`` and ``output_name``
    must match the hypernet (its ``n_tasks`` and ``onnx_output``), or ValueError.
    """

    if getattr(net, "n_tasks", n_tasks) != n_tasks or getattr(net, "onnx_output", output_name) != output_name:
        raise ValueError(f"export_hypernet: {type(net).__name__} has {getattr(net, 'n_tasks', '?')} tasks and "
                         f"output {getattr(net, 'onnx_output', '?')!r}; asked for {n_tasks} and {output_name!r}")
    path = Path(path)
    with atomic_path(path) as tmp:
        export_onnx(net, tmp)
        _finish(tmp, tmp, fold=False)
    return path
