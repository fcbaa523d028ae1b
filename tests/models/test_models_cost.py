"""Params and MACs of trees, cross-checked against independent counters."""

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dymu_rt.models.cost import CostModel
from dymu_rt.models.tree import identity_table


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
