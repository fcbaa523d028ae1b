"""Params and MACs of any tree, counted on the nodes that actually run.

Convention: **MACs** are multiply-accumulates of convolutions and linear layers (the
fvcore convention the paper's "GFLOPs" column follows); **FLOPs** = 2 × MACs. BatchNorm,
activations and interpolation are not counted (BN disappears when folded for
deployment). Tables in dymu-rt show GMACs under the heading "GFLOPs (MAC)" and also give
FLOPs where space allows. Params are the PyTorch parameters of the used nodes and all
heads (BN affine included, as the paper counts the anchor-based tree).

Per-node costs are measured once with forward hooks at the preset's input size; a tree's
cost is the sum over its alive nodes plus the heads. Tests cross-check against
``torch.utils.flop_counter.FlopCounterMode`` on the actual tree execution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.models.tree import identity_table, used_nodes
from dymu_rt.utils import units


@dataclasses.dataclass(frozen=True)
class Cost:
    """Inference cost of one tree at the preset's input size, batch 1."""

    params: int
    macs: int

    @property
    def flops(self) -> int:
        """2 × MACs."""
        return 2 * self.macs

    @property
    def gmacs(self) -> float:
        """MACs / 1e9 (the paper's "GFLOPs")."""
        return units.gmacs(self.macs)

    @property
    def gflops(self) -> float:
        """2 x MACs / 1e9."""
        return units.gflops(self.macs)


def _module_macs(module: nn.Module, x_args: tuple) -> int:
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    try:
        module(*x_args)
    finally:
        for h in hooks:
            h.remove()
    return total


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class CostModel:
    """Per-node and per-head costs of an anchor net; sums them for any tree."""

    def __init__(self, anchor) -> None:
        L, N = anchor.num_layers, anchor.num_tasks
        self.node_macs = np.zeros((L, N), dtype=np.int64)
        self.node_params = np.zeros((L, N), dtype=np.int64)
        was_training = anchor.training
        anchor.eval()
        with torch.no_grad():
            h, w = anchor.input_size
            x = anchor.normalize(torch.zeros(1, 3, h, w))
            for j in range(N):
                cur = x
                for l in range(L):
                    mod = anchor.node_module(l, j)
                    self.node_macs[l, j] = _module_macs(mod, (cur,))
                    self.node_params[l, j] = _params(mod)
                    cur = mod(cur)
                    if l == anchor.low_level_layer:
                        low = cur
                top = cur
                name = anchor.task_names[j]
                head = anchor.heads[name]
                low_arg = low if anchor.low_level_layer is not None else None
                if j == 0:
                    self.head_macs, self.head_params = {}, {}
                self.head_macs[name] = _module_macs(head, (top, low_arg, (h, w)))
                self.head_params[name] = _params(head)
        anchor.train(was_training)
        self.num_layers, self.num_tasks = L, N

    def tree_cost(self, parents) -> Cost:
        """Cost of the tree ``parents`` (alive nodes + all heads)."""
        used = used_nodes(np.asarray(parents))
        macs = int(self.node_macs[used].sum()) + sum(self.head_macs.values())
        params = int(self.node_params[used].sum()) + sum(self.head_params.values())
        return Cost(params=params, macs=macs)

    def backbone_cost(self, parents) -> Cost:
        """Cost of the alive backbone nodes only (what branching saves)."""
        used = used_nodes(np.asarray(parents))
        return Cost(params=int(self.node_params[used].sum()), macs=int(self.node_macs[used].sum()))

    def full_cost(self) -> Cost:
        """Cost of the full N-stream single-task net (identity tree)."""
        return self.tree_cost(identity_table(self.num_layers, self.num_tasks))
