"""What ``dymu-rt inspect`` reports: a preset, a run directory or a bundle, as plain dicts.

Costs follow :mod:`dymu_rt.models.cost`: ``gflops`` is GMACs (multiply-accumulates / 1e9,
the paper's "GFLOPs" convention); FLOPs = 2 × MACs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dymu_rt.errors import ValidationError


UNITS = ("gmacs = multiply-accumulates / 1e9 (the paper's 'GFLOPs', fvcore convention); "
         "gflops = floating-point operations / 1e9 = 2 x MACs / 1e9")

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
            "macs": cost.macs, "gmacs": cost.macs / 1e9, "gflops": 2 * cost.macs / 1e9,
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


def describe_bundle(path: str | Path, check_hashes: bool = False) -> dict[str, Any]:
    """Topologies of a bundle with params/GFLOPs and point counts, most points first."""
    from dymu_rt.compile.bundle import bundle_bytes, read_manifest, verify_bundle

    m = verify_bundle(path, check_hashes) if check_hashes else read_manifest(path)
    tops = sorted(({"id": tid, "params": t["params"], "macs": t["macs"], "gmacs": t["macs"] / 1e9,
                    "gflops": 2 * t["macs"] / 1e9,
                    "n_points": t["n_points"], "file": t["file"]} for tid, t in m["topologies"].items()),
                  key=lambda t: (-t["n_points"], t["macs"], t["id"]))
    return {"what": "bundle", "path": str(path), "preset": m["preset"], "trained_on": m.get("trained_on"),
            "training_data": m.get("training_data"),
            "tasks": [t["name"] for t in m["tasks"]], "grid": m["grid"], "points": len(m["points"]),
            "n_topologies": len(tops), "topologies": tops, "bundle_bytes": bundle_bytes(path),
            "weights_bytes": m.get("weights", {}).get("bytes"),
            "units": UNITS,
            "engines": {b: sorted(p) for b, p in m.get("engines", {}).items()},
            "latency_profiles": sorted(m.get("latency", {})),
            # An AdaShare / DAG bundle: one fixed architecture (dymu_rt.compile.static).
            "static": None if not m.get("static") else {
                "method": m["static"].get("method"), "preference": m["static"].get("preference"),
                "shared_modules": m["static"].get("shared_modules", []),
                "nodes": len(m["static"].get("graph", {}).get("nodes", []))}}


def describe(target: str) -> dict[str, Any]:
    """Describe ``target``: a bundle directory, a run directory, or a preset name."""
    from dymu_rt.compile.bundle import MANIFEST
    from dymu_rt.models.presets import PRESETS, is_preset_name

    p = Path(target)
    if p.is_dir() and (p / MANIFEST).is_file():
        return describe_bundle(p)
    if p.is_dir() and (p / "config.json").is_file():
        return describe_run(p)
    if is_preset_name(target):
        return describe_preset(target)
    raise ValidationError(f"'{target}' is neither a bundle, a run directory nor a preset name "
                          f"(presets: {', '.join(PRESETS)})")
