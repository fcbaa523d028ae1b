"""Params, MACs and the paper's "GFLOPs" of any tree, counted on the modules that run.

Two cost conventions:

* **MACs** (``macs``, ``gmacs`` = MACs / 1e9): multiply-accumulates of convolutions and
  linear layers only. BN folds into the convs for deployment, so this is what a deployed
  graph spends in its heavy ops. ``gflops`` = 2 x MACs / 1e9 (floating-point operations).
* **The paper's "GFLOPs"** (``flops_paper``, ``gflops_paper`` = flops_paper / 1e9): fvcore's
  totals, which is how the paper's tables count (Raychaudhuri et al. 2022, Tables 1-3): conv
  and linear MACs **plus** BatchNorm (2 per element, 1 when it has no affine parameters),
  bilinear upsampling (4 per output element) and adaptive average pooling (1 per input
  element). Activations, additions, max pooling and the input normalization count 0, as in
  fvcore. 3-4 % above the MACs for the paper's nets.

Params are the PyTorch parameters of what the tree runs: the shared stem, the alive nodes
and all heads (BN affine included, as the paper counts the anchor-based tree).

Per-module costs are measured once with forward hooks at the preset's input size (or
another ``size``); a tree's cost is the stem plus its alive nodes plus the heads. Tests
cross-check against an independent counter on the actual tree execution (torch's
``FlopCounterMode`` for MACs, an aten-level dispatch counter of fvcore's rules for the
paper's GFLOPs).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.models.layers import Resize
from dymu_rt.core.tree import identity_table, used_nodes
from dymu_rt.core import units


@dataclasses.dataclass(frozen=True)
class Cost:
    """Inference cost of one tree at one input size, batch 1."""

    params: int
    macs: int
    flops_paper: int = 0

    @property
    def flops(self) -> int:
        """2 × MACs."""
        return 2 * self.macs

    @property
    def gmacs(self) -> float:
        """MACs / 1e9 (conv + linear multiply-accumulates)."""
        return units.gmacs(self.macs)

    @property
    def gflops(self) -> float:
        """2 x MACs / 1e9."""
        return units.gflops(self.macs)

    @property
    def gflops_paper(self) -> float:
        """The paper's "GFLOPs": fvcore's count / 1e9 (see the module docstring)."""
        return units.gflops_paper(self.flops_paper)

    def as_dict(self) -> dict:
        """The cost fields every report uses (inspect, bundles, eval, run)."""
        return {"params": self.params, "macs": self.macs, "gmacs": self.gmacs,
                "gflops": self.gflops, "gflops_paper": self.gflops_paper}


def _module_costs(module: nn.Module, x_args: tuple) -> tuple[int, int]:
    """(MACs, fvcore FLOPs) of one forward of ``module`` on ``x_args``."""
    macs = extra = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal macs
        macs += out.numel() // out.shape[0] * m.in_features

    def bn_hook(m: nn.BatchNorm2d, inp, out):
        nonlocal extra
        extra += out.numel() // out.shape[0] * (2 if m.affine else 1)

    def resize_hook(m: Resize, inp, out):
        nonlocal extra
        extra += 4 * (out.numel() // out.shape[0])

    def pool_hook(m: nn.AdaptiveAvgPool2d, inp, out):
        nonlocal extra
        extra += inp[0].numel() // inp[0].shape[0]

    kinds = ((nn.Conv2d, conv_hook), (nn.Linear, linear_hook), (nn.BatchNorm2d, bn_hook),
             (Resize, resize_hook), (nn.AdaptiveAvgPool2d, pool_hook))
    hooks = []
    for m in module.modules():
        for cls, fn in kinds:
            if isinstance(m, cls):
                hooks.append(m.register_forward_hook(fn))
    try:
        module(*x_args)
    finally:
        for h in hooks:
            h.remove()
    return macs, macs + extra


def _params(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class CostModel:
    """Per-node, stem and per-head costs of an anchor net; sums them for any tree.

    ``size`` (H, W) defaults to the anchor's input size.
    """

    def __init__(self, anchor, size: Optional[tuple[int, int]] = None) -> None:
        L, N = anchor.num_layers, anchor.num_tasks
        self.size = tuple(size) if size is not None else tuple(anchor.input_size)
        self.node_macs = np.zeros((L, N), dtype=np.int64)
        self.node_flops = np.zeros((L, N), dtype=np.int64)
        self.node_params = np.zeros((L, N), dtype=np.int64)
        self.head_macs, self.head_flops, self.head_params = {}, {}, {}
        was_training = anchor.training
        anchor.eval()
        with torch.no_grad():
            h, w = self.size
            x = anchor.normalize(torch.zeros(1, 3, h, w))
            self.stem_params = _params(anchor.stem)
            if anchor.stem is not None:
                self.stem_macs, self.stem_flops = _module_costs(anchor.stem, (x,))
                x = anchor.stem(x)
            else:
                self.stem_macs = self.stem_flops = 0
            for j in range(N):
                cur, low = x, None
                for l in range(L):
                    mod = anchor.node_module(l, j)
                    self.node_macs[l, j], self.node_flops[l, j] = _module_costs(mod, (cur,))
                    self.node_params[l, j] = _params(mod)
                    cur = mod(cur)
                    if l == anchor.low_level_layer:
                        low = cur
                name = anchor.task_names[j]
                head = anchor.heads[name]
                self.head_macs[name], self.head_flops[name] = _module_costs(head, (cur, low, (h, w)))
                self.head_params[name] = _params(head)
        anchor.train(was_training)
        self.num_layers, self.num_tasks = L, N

    def _fixed(self) -> Cost:
        """What every tree pays: the shared stem and all heads."""
        return Cost(params=self.stem_params + sum(self.head_params.values()),
                    macs=self.stem_macs + sum(self.head_macs.values()),
                    flops_paper=self.stem_flops + sum(self.head_flops.values()))

    def tree_cost(self, parents, head_streams: Optional[Sequence[int]] = None) -> Cost:
        """Cost of the tree ``parents`` (stem + alive nodes + all heads)."""
        b, f = self.backbone_cost(parents, head_streams), self._fixed()
        return Cost(params=b.params + f.params, macs=b.macs + f.macs,
                    flops_paper=b.flops_paper + f.flops_paper)

    def backbone_cost(self, parents, head_streams: Optional[Sequence[int]] = None) -> Cost:
        """Cost of the alive nodes only (what branching can save)."""
        used = used_nodes(np.asarray(parents), head_streams)
        return Cost(params=int(self.node_params[used].sum()), macs=int(self.node_macs[used].sum()),
                    flops_paper=int(self.node_flops[used].sum()))

    def fixed_cost(self) -> Cost:
        """Cost no tree can remove: the shared stem and the per-task heads."""
        return self._fixed()

    def full_cost(self) -> Cost:
        """Cost of the full N-stream single-task net (identity tree)."""
        return self.tree_cost(identity_table(self.num_layers, self.num_tasks))

    def shared_encoder_cost(self) -> Cost:
        """The PHN baseline's shared-encoder net: one stream (stem, backbone and top node)
        feeding every task's head (the paper's PHN rows)."""
        p = np.zeros((self.num_layers, self.num_tasks), dtype=np.int64)
        p[0] = np.arange(self.num_tasks)
        return self.tree_cost(p, head_streams=[0] * self.num_tasks)
