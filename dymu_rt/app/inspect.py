"""What ``dymu-rt inspect`` reports: a preset, a run directory or a bundle, as plain dicts.

Costs follow :mod:`dymu_rt.models.cost`: ``gmacs`` = conv + linear multiply-accumulates /
1e9, ``gflops`` = 2 × MACs / 1e9, ``gflops_paper`` = the paper's "GFLOPs" (fvcore's count).

A bundle is described without torch (the base install inspects bundles): presets, models,
hypernets and run directories need torch (the training extra), so their imports sit in the
functions that describe a preset or a run, not at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dymu_rt.bundle.layout import MANIFEST
from dymu_rt.bundle.summary import UNITS, describe_bundle
from dymu_rt.core.errors import ValidationError


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``512x512``) as (H, W); a ValidationError names the value otherwise."""
    parts = str(text).lower().split("x")
    try:
        h, w = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        h = w = None
    if h is None or not (16 <= h <= 4096 and 16 <= w <= 4096):
        raise ValidationError(f"--size '{text}': expected HxW with 16 <= H, W <= 4096 (e.g. 512x512)")
    return h, w


def anchor_costs(preset, anchor, size=None) -> dict[str, Any]:
    """Cost fields of the single-task anchor and the PHN shared encoder, the non-branchable
    share (stem + heads), controller sizes and the paper's numbers for this preset."""
    from dymu_rt.control.hypernets import controller_sizes
    from dymu_rt.models.cost import CostModel
    from dymu_rt.models.presets import PAPER_REFERENCE

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
    from dymu_rt.models.presets import get_preset

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
    import torch

    from dymu_rt.models.dag import DagNet, default_spec, lower_masks
    from dymu_rt.models.graph import graph_cost, materialize_graph

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
    from dymu_rt.train.checkpoint import RunDir

    run = RunDir(path)
    cfg = run.read_config()
    preset = run.preset()
    anchor = preset.build().eval()
    return {"what": "run", "path": str(path), "preset": cfg["preset"]["name"], "data": cfg.get("data"),
            "tasks": [t["name"] for t in cfg["preset"]["tasks"]],
            "input_size": list(cfg["preset"]["input_size"]), "layers": anchor.num_layers,
            **anchor_costs(preset, anchor, size), "units": UNITS,
            "stages": {k: dict(v) for k, v in cfg["stages"].items()}, "method": cfg.get("method", "dymu")}


def describe(target: str, size: str | None = None) -> dict[str, Any]:
    """Describe ``target``: a bundle directory, a run directory, or a preset name.

    ``size`` ("HxW") costs a preset's or run's anchor at that input size; a bundle's costs
    are fixed at its input size.
    """
    hw = parse_size(size) if size is not None else None
    p = Path(target)
    if p.is_dir() and (p / MANIFEST).is_file():
        if hw is not None:
            raise ValidationError("--size applies to a preset or a run; a bundle's costs are "
                                  "those of its input size")
        return describe_bundle(p)                   # torch-free: the base install inspects bundles
    if p.is_dir() and (p / "config.json").is_file():
        return describe_run(p, hw)
    from dymu_rt.models.presets import PRESETS, is_preset_name

    if is_preset_name(target):
        return describe_preset(target, hw)
    raise ValidationError(f"'{target}' is neither a bundle, a run directory nor a preset name "
                          f"(presets: {', '.join(PRESETS)})")
