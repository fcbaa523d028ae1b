"""Params and MACs of trees, cross-checked against independent counters."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dymu_rt.models.backbones import BackboneSpec
from dymu_rt.models.cost import CostModel
from dymu_rt.models.heads import HeadSpec
from dymu_rt.models.presets import get_preset
from dymu_rt.core.tree import canonicalize, identity_table


def _trees(net):
    L, N = net.num_layers, net.num_tasks
    full = identity_table(L, N)
    shared = full.copy()
    shared[1] = [0, 0, 0]
    mixed = full.copy()
    mixed[4] = [1, 1, 2]
    return [full, shared, mixed]


def test_macs_match_torch_flop_counter(tiny_preset):
    net = tiny_preset.build().eval()
    cm = CostModel(net)
    for p in _trees(net):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(torch.rand(1, 3, 32, 32), p)
        assert fc.get_total_flops() == 2 * cm.tree_cost(p).macs


def test_params_match_parameters_reached_by_autograd(tiny_preset):
    net = tiny_preset.build().eval()
    cm = CostModel(net)
    for p in _trees(net):
        net.zero_grad(set_to_none=True)
        out = net(torch.rand(1, 3, 32, 32), p)
        sum(o.sum() for o in out.values()).backward()
        reached = sum(q.numel() for q in net.parameters() if q.grad is not None)
        assert reached == cm.tree_cost(p).params


def test_sharing_reduces_cost_monotonically(tiny_preset):
    net = tiny_preset.build().eval()
    cm = CostModel(net)
    full, shared, _ = _trees(net)
    assert cm.tree_cost(shared).macs < cm.tree_cost(full).macs
    assert cm.tree_cost(shared).params < cm.full_cost().params
    all_shared = identity_table(net.num_layers, net.num_tasks)
    all_shared[1:] = 0           # every task reads stream 0; each keeps only its own top node
    top = cm.node_macs[-1, 1] + cm.node_macs[-1, 2]
    assert cm.backbone_cost(all_shared).macs == cm.node_macs[:, 0].sum() + top
    assert 3 * cm.node_macs[:, 0].sum() == cm.backbone_cost(full).macs


# -- other backbones: grouped/depthwise convs (MobileNetV2), ResNet-9 + linear heads --------

def _tiny(kind: str):
    """Narrow CPU versions of the paper's other two configurations (same code)."""
    if kind == "mobilenetv2":
        base = get_preset("synth-pascal")
        return dataclasses.replace(base, tasks=base.tasks[:3], input_size=(32, 32),
                                   backbone=BackboneSpec("mobilenetv2", 0, 0.25, 8, "imagenet"),
                                   head=HeadSpec("deeplab", 8, (2,), 8, 8))
    base = get_preset("cifar100")
    return dataclasses.replace(base, tasks=base.tasks[:4], input_size=(32, 32),
                               backbone=BackboneSpec("resnet9", 0, 0.125, 32, "small"))


def _random_trees(net, k=3, seed=0):
    rng = np.random.default_rng(seed)
    L, N = net.num_layers, net.num_tasks
    out = [identity_table(L, N)]
    shared = identity_table(L, N)
    shared[1:-1] = 0                     # hard-shared backbone below the top layer
    out.append(shared)
    for _ in range(k):
        p = rng.integers(0, N, size=(L, N))
        p[0] = np.arange(N)
        out.append(p)
    return out


@pytest.mark.parametrize("kind", ["mobilenetv2", "resnet9"])
def test_other_backbones_match_independent_counters(kind):
    preset = _tiny(kind)
    net = preset.build().eval()
    if kind == "mobilenetv2":
        assert any(m.groups > 1 for m in net.modules() if isinstance(m, torch.nn.Conv2d))   # depthwise
    else:
        assert preset.head.kind == "linear" and net.low_level_layer is None
        assert all(any(isinstance(m, torch.nn.Linear) for m in h.modules()) for h in net.heads.values())
    cm = CostModel(net)
    h, w = preset.input_size
    macs = set()
    for p in _random_trees(net):
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(torch.rand(1, 3, h, w), p)
        assert fc.get_total_flops() == 2 * cm.tree_cost(p).macs, canonicalize(p).tolist()
        net.zero_grad(set_to_none=True)
        out = net(torch.rand(1, 3, h, w), p)
        sum(o.sum() for o in out.values()).backward()
        reached = sum(q.numel() for q in net.parameters() if q.grad is not None)
        assert reached == cm.tree_cost(p).params
        macs.add(cm.tree_cost(p).macs)
    assert len(macs) >= 3                                       # the trees really differ in cost
