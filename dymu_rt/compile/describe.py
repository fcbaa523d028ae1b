"""What ``dymu-rt inspect`` reports: a preset, a run directory or a bundle, as plain dicts.

Costs follow :mod:`dymu_rt.models.cost`: ``gflops`` is GMACs (multiply-accumulates / 1e9,
the paper's "GFLOPs" convention); FLOPs = 2 × MACs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dymu_rt.bundle.layout import MANIFEST
from dymu_rt.bundle.summary import UNITS, describe_bundle
from dymu_rt.errors import ValidationError



def describe_preset(name: str) -> dict[str, Any]:
    """Tasks, layers, and the cost of the full single-task anchor net (identity tree)."""
    from dymu_rt.models.cost import CostModel
    from dymu_rt.models.presets import get_preset

    preset = get_preset(name)
    anchor = preset.build().eval()
    cost = CostModel(anchor).full_cost()
    return {"what": "preset", "name": preset.name, "description": preset.description,
            "dataset": preset.dataset,
            "tasks": [{"name": t.name, "kind": t.kind, "out_channels": t.out_channels,
                       "loss_weight": t.loss_weight} for t in preset.tasks],
            "backbone": f"{preset.backbone.kind}{preset.backbone.depth or ''} x{preset.backbone.width_mult:g}",
            "head": preset.head.kind, "layers": anchor.num_layers, "params": cost.params,
            "macs": cost.macs, "gmacs": cost.gmacs, "gflops": cost.gflops,
            "units": UNITS,
            "input_size": list(preset.input_size), "bn_delta_size": anchor.bn_delta_size}


def describe_run(path: str | Path) -> dict[str, Any]:
    """Preset name, data and per-stage status of a run directory."""
    from dymu_rt.train.checkpoint import RunDir

    cfg = RunDir(path).read_config()
    return {"what": "run", "path": str(path), "preset": cfg["preset"]["name"], "data": cfg.get("data"),
            "tasks": [t["name"] for t in cfg["preset"]["tasks"]],
            "input_size": list(cfg["preset"]["input_size"]),
            "stages": {k: dict(v) for k, v in cfg["stages"].items()}, "method": cfg.get("method", "dymu")}


def describe(target: str) -> dict[str, Any]:
    """Describe ``target``: a bundle directory, a run directory, or a preset name."""
    p = Path(target)
    if p.is_dir() and (p / MANIFEST).is_file():
        return describe_bundle(p)                   # torch-free: the base install inspects bundles
    if p.is_dir() and (p / "config.json").is_file():
        return describe_run(p)
    from dymu_rt.models.presets import PRESETS, is_preset_name

    if is_preset_name(target):
        return describe_preset(target)
    raise ValidationError(f"'{target}' is neither a bundle, a run directory nor a preset name "
                          f"(presets: {', '.join(PRESETS)})")
