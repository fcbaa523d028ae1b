"""Builders of tiny, randomly initialized run directories for compile/runtime tests.

A plain module (no pytest dependency) so that other test folders and benchmarks can import
it (``sys.path.insert(0, "tests/compile")``). The run holds a random-init anchor with
randomized BN statistics (so BN folding is exercised), an edge hypernet with random heads
(so a grid yields several distinct trees, cross-task edges included) and a weight
hypernet with noticeable BN deltas; every training stage is marked done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch


def tiny_preset(input_size=(32, 32)):
    """synth-nyu at 32x32 with the narrowest widths (3 tasks, 9 layers; shared stem, R-ASPP,
    light decoder as in the preset): seconds to run."""
    from dymu_rt.models.backbones import BackboneSpec
    from dymu_rt.models.heads import HeadSpec
    from dymu_rt.models.presets import get_preset

    return dataclasses.replace(
        get_preset("synth-nyu"), input_size=tuple(input_size),
        backbone=BackboneSpec("resnet", 18, 0.125, 8, "imagenet", shared_stem=True, raspp_channels=8),
        head=HeadSpec("light", 0, (), 8, 8),
    )


def micro_preset():
    """:func:`tiny_preset` at 16x16 with half its widths: the committed golden-bundle runs
    (tests/compile/golden/, ``scripts/golden_bundles.py``) are ~1.6 MB and build in seconds."""
    p = tiny_preset((16, 16))
    return dataclasses.replace(p, backbone=dataclasses.replace(p.backbone, width_mult=0.0625, raspp_channels=4),
                               head=dataclasses.replace(p.head, low_channels=4, decoder_channels=4))


@torch.no_grad()
def randomize_bn(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
            m.bias.copy_(torch.randn(c, generator=generator) * 0.1)


@torch.no_grad()
def randomize_controller(edge: torch.nn.Module, weight: torch.nn.Module, generator: torch.Generator,
                         edge_scale: float, delta_scale: float) -> None:
    """Make a fresh controller non-trivial: preference-dependent trees and BN deltas.

    A freshly built edge hypernet predicts the identity tree everywhere (its identity prior
    dominates) and a fresh weight hypernet outputs zero deltas; neither exercises a build.
    """
    heads = list(getattr(edge, "heads", [])) or [m for m in edge.modules() if isinstance(m, torch.nn.Linear)][-1:]
    for h in heads:
        h.weight.copy_(torch.randn(h.weight.shape, generator=generator) * edge_scale)
        h.bias.copy_(torch.randn(h.bias.shape, generator=generator) * edge_scale)
    if isinstance(getattr(edge, "identity_prior", None), torch.Tensor):
        edge.identity_prior.mul_(0.5)
    out = getattr(weight, "out", None) or [m for m in weight.modules() if isinstance(m, torch.nn.Linear)][-1]
    out.weight.copy_(torch.randn(out.weight.shape, generator=generator) * delta_scale)
    out.bias.copy_(torch.randn(out.bias.shape, generator=generator) * delta_scale)


def make_tiny_run(path, seed: int = 0, preset=None, edge_scale: float = 1.0,
                  delta_scale: float = 0.2) -> Path:
    """Write a complete tiny run directory at ``path`` (all stages done); returns the path."""
    from dymu_rt.control.hypernets import EdgeHypernet, WeightHypernet
    from dymu_rt.run.layout import STAGES, RunDir, save_module

    preset = preset or tiny_preset()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    anchor = preset.build().eval()
    randomize_bn(anchor, g)
    edge = EdgeHypernet(len(preset.tasks), anchor.num_layers)
    weight = WeightHypernet(len(preset.tasks), anchor.bn_delta_size)
    randomize_controller(edge, weight, g, edge_scale, delta_scale)
    run = RunDir(path)
    run.init(preset, data="synth")
    save_module(anchor, run.module_path("anchor"))
    save_module(edge, run.module_path("edge_hypernet"))
    save_module(weight, run.module_path("weight_hypernet"))
    for stage in STAGES:
        run.mark_done(stage, {"step": 0, "fixture": True})
    return Path(path)


def make_static_run(path, method: str, preset=None, mask_seed: int = 0) -> Path:
    """A finished AdaShare or DAG (M=3) run of the tiny preset: random weights, decisions
    that drop blocks / inputs / edges (so they matter)."""
    import numpy as np

    from dymu_rt.methods import get_method
    from dymu_rt.run.layout import STATIC_STAGES, RunDir
    from dymu_rt.training.static_run import save_result

    preset = preset or tiny_preset()
    run = RunDir(path)
    run.init(preset, data="synth", extra=get_method(method).new_run_extra(preset, {}, None))
    torch.manual_seed(1)
    if method == "adashare":
        from dymu_rt.models.adashare import AdaShareNet, lower_policy

        net = AdaShareNet(preset).eval()
        randomize_bn(net, torch.Generator().manual_seed(2))
        policy = np.ones((net.num_blocks, len(preset.tasks)), dtype=int)
        policy[1, 0] = policy[2, 1] = 0
        save_result(run, net, lower_policy(net, policy), {"policy": policy.tolist()})
    else:
        from dymu_rt.models.dag import DagNet, lower_masks
        from dymu_rt.training.dag import DagConfig, dag_spec

        net = DagNet(preset, dag_spec(preset, DagConfig(**run.read_config()["method_config"]))).eval()
        randomize_bn(net, torch.Generator().manual_seed(2))
        k, n, e = len(preset.tasks), net.spec.states, len(net.edge_list)
        g = np.random.default_rng(mask_seed)
        a, b, gam = ((g.random(s) < 0.6).astype(float) for s in ((k, n), (k, n), (k, e)))
        a[:, -1] = b[:, -1] = 1.0
        save_result(run, net, lower_masks(net, a, b, gam), {"masks": {"A": a.tolist(), "B": b.tolist(),
                                                                      "G": gam.tolist()}})
    for s in STATIC_STAGES:
        run.mark_done(s, {"step": 0, "fixture": True})
    return path


def add_phn_bn(path) -> None:
    """A PHN-BN baseline (its own anchor-structured net, BN hypernet with noticeable deltas)."""
    from dymu_rt.run.layout import RunDir, save_module
    from dymu_rt.training.phn import PHNBN

    run = RunDir(path)
    g = torch.Generator().manual_seed(3)
    model = PHNBN(run.preset().build().eval())
    randomize_bn(model.net, g)
    with torch.no_grad():
        out = [m for m in model.hyper.modules() if isinstance(m, torch.nn.Linear)][-1]
        out.weight.normal_(0, 0.05, generator=g)
    save_module(model, run.module_path("phn_bn"))
    run.mark_done("phn-bn", {"step": 0, "fixture": True})
