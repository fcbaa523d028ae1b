"""What ``dymu-rt inspect`` reports for a preset or a run directory, as plain dicts (torch:
the training extra). A bundle is described by :mod:`dymu_rt.app.inspect` without torch, which
loads this module only for a target that is not a bundle.

Costs follow :mod:`dymu_rt.models.cost`: ``gmacs`` = conv + linear multiply-accumulates /
1e9, ``gflops`` = 2 × MACs / 1e9, ``gflops_paper`` = the paper's "GFLOPs" (fvcore's count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dymu_rt.bundle.summary import UNITS
from dymu_rt.control.hypernets import controller_sizes
from dymu_rt.core.errors import ValidationError
from dymu_rt.models.cost import CostModel
from dymu_rt.models.dag import DagNet, default_spec, lower_masks
from dymu_rt.models.graph import graph_cost, materialize_graph
from dymu_rt.models.presets import PAPER_REFERENCE, PRESETS, get_preset, is_preset_name
from dymu_rt.run.layout import RunDir


def anchor_costs(preset, anchor, size=None) -> dict[str, Any]:
    """Cost fields of the single-task anchor and the PHN shared encoder, the non-branchable
    share (stem + heads), controller sizes and the paper's numbers for this preset."""
    cm = CostModel(anchor, size)
    full, fixed, phn = cm.full_cost(), cm.fixed_cost(), cm.shared_encoder_cost()
    out = {**full.as_dict(), "size": list(cm.size),
           "non_branchable": {"params": fixed.params, "gmacs": fixed.gmacs,
                              "params_share": fixed.params / full.params, "gmacs_share": fixed.macs / full.macs,
                              "what": "shared stem + per-task heads: what no tree can prune"},
           "phn_shared_encoder": phn.as_dict(),
           "controller_params": controller_sizes(anchor.num_tasks, anchor.num_layers, anchor.bn_delta_size)}
    ref = PAPER_REFERENCE.get(preset.name)
    if ref is not None:
        out["paper"] = dict(ref)
    return out


def describe_preset(name: str, size=None) -> dict[str, Any]:
    """Tasks, layers, and the cost of the full single-task anchor net (identity tree) at the
    preset's input size or ``size`` (H, W)."""
    preset = get_preset(name)
    anchor = preset.build().eval()
    bb = preset.backbone
    extra = {"dag": dag_costs(preset, size)} if bb.kind == "vgg16" else {}
    return {**extra, "what": "preset", "name": preset.name, "description": preset.description,
            "dataset": preset.dataset,
            "tasks": [{"name": t.name, "kind": t.kind, "out_channels": t.out_channels,
                       "loss_weight": t.loss_weight} for t in preset.tasks],
            "backbone": f"{_backbone_name(bb)} x{bb.width_mult:g}",
            "shared_stem": bb.shared_stem, "output_stride": bb.output_stride,
            "raspp_channels": bb.raspp_channels,
            "head": preset.head.kind, "layers": anchor.num_layers,
            **anchor_costs(preset, anchor, size), "units": UNITS,
            "input_size": list(preset.input_size), "bn_delta_size": anchor.bn_delta_size}


def _backbone_name(bb) -> str:
    """resnet + depth (resnet34); kinds that already name their depth (vgg16, resnet9) as they are."""
    return bb.kind if bb.kind[-1].isdigit() or not bb.depth else f"{bb.kind}{bb.depth}"


def dag_costs(preset, size=None, flows=(3, 5, 7, 9)) -> list[dict[str, Any]]:
    """The DAG paper's central network on a VGG-16 preset (``--method dag --flow M``) before
    the flow-based reduction: every edge, read-in and read-out kept (the reduced network is
    a sub-graph of it). Params once; GMACs of one image with every task sharing the graph."""
    rows = []
    for m in flows:
        net = DagNet(preset, default_spec(preset, m)).eval()
        K, N, E = len(net.task_names), net.spec.states, len(net.edge_list)
        graph = lower_masks(net, torch.ones(K, N), torch.ones(K, N), torch.ones(K, E))
        cost = graph_cost(materialize_graph(net, graph, preset.mean, preset.std), size or tuple(preset.input_size))
        rows.append({"flow": m, "states": N, "edges": E, "params": cost.params, "gmacs": cost.macs / 1e9})
    return rows


def describe_run(path: str | Path, size=None) -> dict[str, Any]:
    """Preset name, data, per-stage status, anchor costs and controller sizes of a run directory."""
    run = RunDir(path)
    cfg = run.read_config()
    preset = run.preset()
    anchor = preset.build().eval()
    return {"what": "run", "path": str(path), "preset": cfg["preset"]["name"], "data": cfg.get("data"),
            "tasks": [t["name"] for t in cfg["preset"]["tasks"]],
            "input_size": list(cfg["preset"]["input_size"]), "layers": anchor.num_layers,
            **anchor_costs(preset, anchor, size), "units": UNITS,
            "stages": {k: dict(v) for k, v in cfg["stages"].items()}, "method": cfg.get("method", "dymu")}


def describe_model(target: str, hw=None) -> dict[str, Any]:
    """Describe ``target``, a run directory or a preset name (``hw``: (H, W) or None)."""
    p = Path(target)
    if p.is_dir() and (p / "config.json").is_file():
        return describe_run(p, hw)
    if is_preset_name(target):
        return describe_preset(target, hw)
    raise ValidationError(f"'{target}' is neither a bundle, a run directory nor a preset name "
                          f"(presets: {', '.join(PRESETS)})")
