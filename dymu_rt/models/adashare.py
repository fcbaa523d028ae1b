"""AdaShare (Sun et al., NeurIPS 2020): one backbone, a select-or-skip policy per task and block.

The backbone is the preset's (the same node list the anchor net's streams use, built
once): the stem is shared by every task, and each later node is a *block* that task k
executes or skips. A skipped residual block computes its shortcut only — the identity,
or the 1x1 projection of a block that changes shape (as AdaShare's code does for ResNet
downsampling blocks); a block without any shortcut cannot be skipped and is always
executed. Per task and block the policy holds two logits (select, skip);
:meth:`AdaShareNet.forward` takes per-task select weights ``v`` [blocks, tasks] in
[0, 1] (Gumbel-softmax samples during the search, 0/1 once fixed):
``x_{b+1} = v·block_b(x_b) + (1 − v)·shortcut_b(x_b)`` (eq. 2's soft decisions used in
forward and backward, as the paper does).

:func:`lower_policy` turns a 0/1 policy into the :class:`~dymu_rt.models.graph.StaticGraph`
the compiler exports: tasks that took the same decisions so far share one computation,
and a block used by several tasks after their paths diverged is one set of weights
applied to each task's input.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.models.graph import IMAGE, GraphHead, GraphNode, StaticGraph
from dymu_rt.models.backbones import (BasicBlock, InvertedResidual, Residual, build_nodes, build_stem,
                                      low_level_layer)
from dymu_rt.models.heads import build_head, head_uses_skip


def shortcut_module(block: nn.Module) -> Optional[str]:
    """How a skipped ``block`` behaves: "" = identity, "downsample" = that submodule,
    None = cannot be skipped (no shortcut)."""
    if isinstance(block, BasicBlock):
        return "" if block.downsample is None else "downsample"
    if isinstance(block, Residual):
        return ""
    if isinstance(block, InvertedResidual) and block.use_res:
        return ""
    return None


class AdaShareNet(nn.Module):
    """Shared stem + blocks + one head per task + the policy logits (blocks, tasks, 2)."""

    def __init__(self, preset) -> None:
        super().__init__()
        nodes, infos = build_nodes(preset.backbone)
        self.task_names = [t.name for t in preset.tasks]
        self.input_size = tuple(preset.input_size)
        # The paper nets' shared stem (AnchorNet.stem) sits outside the branchable nodes; a
        # backbone without one has its stem as node 0. Either way AdaShare's stem is shared
        # by every task and the branchable nodes after it (R-ASPP included) are its blocks.
        stem = build_stem(preset.backbone)
        low = (low_level_layer(preset.backbone, infos) if head_uses_skip(preset.head)
               else None)
        if stem is not None:
            self.stem = stem[0]
            self.blocks = nn.ModuleList(nodes)
            low = None if low is None else low + 1
            infos = [stem[1]] + list(infos)
        else:
            self.stem = nodes[0]
            self.blocks = nn.ModuleList(nodes[1:])
        self.shortcuts = [shortcut_module(b) for b in self.blocks]
        self.skippable = torch.tensor([s is not None for s in self.shortcuts])
        # Node index of the decoder skip: 0 = the stem's output, b + 1 = after block b.
        self.low_node = low
        low_cin = infos[self.low_node].out_channels if self.low_node is not None else 0
        self.heads = nn.ModuleDict({t.name: build_head(preset.head, infos[-1].out_channels, low_cin,
                                                       t.out_channels) for t in preset.tasks})
        # Policy logits α: [..., 0] = select, [..., 1] = skip; zero = 50/50 at the start.
        self.policy_logits = nn.Parameter(torch.zeros(len(self.blocks), len(self.task_names), 2))
        self.register_buffer("mean", torch.tensor(preset.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preset.std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights W (everything but the policy logits)."""
        return [p for n, p in self.named_parameters() if n != "policy_logits"]

    def select_prob(self) -> torch.Tensor:
        """α_{l,k}: the probability that task k executes block l, [blocks, tasks]."""
        return torch.softmax(self.policy_logits, dim=-1)[..., 0]

    def shortcut(self, b: int, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcuts[b]
        return x if s == "" else self.blocks[b].get_submodule(s)(x)

    def forward(self, x: torch.Tensor, v: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Task -> raw output under select weights ``v`` [blocks, tasks] (default: all 1,
        i.e. hard parameter sharing, the warm-up). Non-skippable blocks always run."""
        B, K = self.num_blocks, len(self.task_names)
        if v is None:
            v = torch.ones(B, K)
        if v.shape != (B, K):
            raise ValueError(f"select weights have shape {tuple(v.shape)}, expected {(B, K)}")
        out_size = (x.shape[2], x.shape[3])
        h0 = self.stem((x - self.mean) / self.std)
        outs = {}
        shared: dict[tuple, tuple[torch.Tensor, Optional[torch.Tensor]]] = {}
        for k, task in enumerate(self.task_names):
            col = v[:, k]
            h, low = h0, (h0 if self.low_node == 0 else None)
            key: tuple = ()
            for b in range(B):
                w = col[b] if self.shortcuts[b] is not None else None
                # Identical all-ones prefixes (warm-up, fixed policies) are computed once.
                hard = w is None or (not w.requires_grad and float(w) in (0.0, 1.0))
                key = key + ((b, 1.0 if w is None else float(w)),) if hard and key is not None else None
                if key is not None and key in shared:
                    h, low = shared[key]
                    continue
                if w is None or (hard and float(w) == 1.0):
                    h = self.blocks[b](h)
                elif hard:
                    h = self.shortcut(b, h)
                else:
                    h = w * self.blocks[b](h) + (1 - w) * self.shortcut(b, h)
                if self.low_node == b + 1:
                    low = h
                if key is not None:
                    shared[key] = (h, low)
            outs[task] = self.heads[task](h, low, out_size)
        return outs


def lower_policy(net: AdaShareNet, policy) -> StaticGraph:
    """The static graph of a 0/1 ``policy`` [blocks, tasks] (1 = execute).

    Node per distinct decision prefix: tasks agreeing on blocks 0..b share block b's output
    node. A skipped identity block adds no node; a skipped projection block adds a node
    running ``blocks.<b>.downsample``.
    """
    p = np.asarray(policy).astype(bool)
    B, K = net.num_blocks, len(net.task_names)
    if p.shape != (B, K):
        raise ValueError(f"policy has shape {p.shape}, expected {(B, K)}")
    nodes: list[GraphNode] = [GraphNode("stem", "stem", ((IMAGE, 1.0),))]
    names: dict[tuple, str] = {(): "stem"}
    heads = []
    for k, task in enumerate(net.task_names):
        cur, key = "stem", ()
        low = "stem" if net.low_node == 0 else None
        for b in range(B):
            execute = bool(p[b, k]) or net.shortcuts[b] is None
            key = key + ((b, execute),)
            if key not in names:
                if execute:
                    nodes.append(GraphNode(f"b{b}_{sum(1 for kk in names if len(kk) == b + 1)}",
                                           f"blocks.{b}", ((cur, 1.0),)))
                    names[key] = nodes[-1].name
                elif net.shortcuts[b] == "":
                    names[key] = cur
                else:
                    nodes.append(GraphNode(f"s{b}_{sum(1 for kk in names if len(kk) == b + 1)}",
                                           f"blocks.{b}.{net.shortcuts[b]}", ((cur, 1.0),)))
                    names[key] = nodes[-1].name
            cur = names[key]
            if net.low_node == b + 1:
                low = cur
        heads.append(GraphHead(task, f"heads.{task}", cur, low))
    return StaticGraph("adashare", tuple(nodes), tuple(heads))
