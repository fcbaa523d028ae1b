"""The anchor net: N single-task streams that execute any tree over their nodes.

``AnchorNet.forward(x, parents, bn_deltas)`` runs the tree given by a parent table
(docs/INTERFACES.md): the shared stem (if the backbone has one) once, then every node on
some task's path exactly once (dead nodes are skipped), then every task's head. The identity table is the full N-stream single-task net. Stage 1 of
controller training uses :meth:`AnchorNet.forward_soft`, where each node reads a convex
combination (Gumbel-softmax sample ν) of the previous layer's nodes.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.models.backbones import BackboneSpec, NodeInfo, build_nodes, build_stem, low_level_layer
from dymu_rt.models.heads import HeadSpec, build_head, head_uses_skip
from dymu_rt.models.layers import modulate, modulated_bns
from dymu_rt.core.tree import ancestor, identity_table, used_nodes, validate_parents


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task of a preset: name, kind (see dymu_rt.tasks), outputs, loss weight w_i."""

    name: str
    kind: str
    out_channels: int
    loss_weight: float = 1.0
    num_classes: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class BNSlot:
    """One modulated ConvBN: its stable name, node, channels and offset in the delta vector.

    ``layer == num_layers`` marks a BN of task ``stream``'s head (light decoder heads are
    modulated too); such a slot is alive in every tree.
    """

    name: str
    layer: int
    stream: int
    channels: int
    offset: int


def node_name(layer: int, stream: int) -> str:
    """Stable name of node (l, j), used for modules and ONNX initializers."""
    return f"node{layer}_{stream}"


class AnchorNet(nn.Module):
    """An optional shared stem, N streams of L nodes, one head per task; executes any tree."""

    def __init__(self, backbone: BackboneSpec, head: HeadSpec, tasks: Sequence[TaskSpec],
                 input_size: tuple[int, int], mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.backbone_spec, self.head_spec = backbone, head
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        self.input_size = tuple(input_size)
        stem = build_stem(backbone)
        # The shared stem sits before every stream: computed once per image, never modulated,
        # never branched (row 0 of a parent table is the first per-task node; it reads the
        # stem's output, or the image when there is no shared stem).
        self.stem: Optional[nn.Module] = stem[0] if stem is not None else None
        streams, infos = [], None
        for _ in self.tasks:
            nodes, node_infos = build_nodes(backbone)
            # Cross-task edges need equal shapes at every node boundary: all streams must
            # agree on (channels, stride) layer by layer.
            if infos is not None and node_infos != infos:
                raise ValueError("streams disagree on node shapes; cross-task edges impossible")
            infos = node_infos
            streams.append(nn.ModuleList(nodes))
        self.streams = nn.ModuleList(streams)
        self.node_infos: list[NodeInfo] = infos
        self.num_layers, self.num_tasks = len(infos), len(self.tasks)
        self.low_level_layer = (low_level_layer(backbone, infos) if head_uses_skip(head)
                                else None)
        low_cin = infos[self.low_level_layer].out_channels if self.low_level_layer is not None else 0
        self.heads = nn.ModuleDict({
            t.name: build_head(head, infos[-1].out_channels, low_cin, t.out_channels) for t in self.tasks
        })
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self._build_bn_layout()
        self.executed_nodes = 0

    # -- BN modulation layout -------------------------------------------------------
    def _build_bn_layout(self) -> None:
        # Node slots layer-major, then the heads' slots (layer L, stream = task index).
        slots, offset = [], 0
        self._node_bns: dict[tuple[int, int], list] = {}
        self._node_slots: dict[tuple[int, int], list[BNSlot]] = {}
        units = [(l, j, node_name(l, j), self.streams[j][l])
                 for l in range(self.num_layers) for j in range(self.num_tasks)]
        units += [(self.num_layers, j, f"head_{t}", self.heads[t]) for j, t in enumerate(self.task_names)]
        for l, j, prefix, module in units:
            pairs = modulated_bns(module)
            self._node_bns[(l, j)] = [bn for _, bn in pairs]
            node_slots = []
            for path, bn in pairs:
                s = BNSlot(f"{prefix}.{path}", l, j, bn.num_features, offset)
                offset += 2 * bn.num_features
                node_slots.append(s)
            self._node_slots[(l, j)] = node_slots
            slots.extend(node_slots)
        self.bn_layout: list[BNSlot] = slots
        self.bn_delta_size: int = offset

    def slot_owner(self, slot: BNSlot) -> nn.Module:
        """The node or head module a BNSlot lives in (its name is relative to it after the first dot)."""
        if slot.layer == self.num_layers:
            return self.heads[self.task_names[slot.stream]]
        return self.streams[slot.stream][slot.layer]

    def slot_alive(self, slot: BNSlot, used: np.ndarray) -> bool:
        """Whether a tree with alive-node mask ``used`` (L, N) contains ``slot`` (heads: always)."""
        return slot.layer == self.num_layers or bool(used[slot.layer, slot.stream])
    def node_deltas(self, bn_deltas: Optional[torch.Tensor], l: int, j: int):
        """Per-BN (Δγ, Δβ) of node (l, j) sliced from a flat delta vector (or None)."""
        if bn_deltas is None:
            return None
        if bn_deltas.shape[-1] != self.bn_delta_size:
            raise ValueError(f"bn_deltas has size {bn_deltas.shape[-1]}, expected {self.bn_delta_size}")
        return [(bn_deltas[s.offset:s.offset + s.channels],
                 bn_deltas[s.offset + s.channels:s.offset + 2 * s.channels])
                for s in self._node_slots[(l, j)]]

    def run_node(self, l: int, j: int, x: torch.Tensor, bn_deltas: Optional[torch.Tensor]) -> torch.Tensor:
        """Run node (l, j) on ``x`` with its BN modulated by ``bn_deltas`` (if given)."""
        with modulate(self._node_bns[(l, j)], self.node_deltas(bn_deltas, l, j)):
            return self.streams[j][l](x)

    def run_head(self, j: int, top: torch.Tensor, low: Optional[torch.Tensor], out_size,
                 bn_deltas: Optional[torch.Tensor]) -> torch.Tensor:
        """Run task j's head (its BNs modulated by ``bn_deltas`` if it has modulated BNs)."""
        L = self.num_layers
        with modulate(self._node_bns[(L, j)], self.node_deltas(bn_deltas, L, j)):
            return self.heads[self.task_names[j]](top, low, out_size)

    def run_stem(self, h: torch.Tensor) -> torch.Tensor:
        """The shared stem on a normalized batch (identity when the streams have their own)."""
        return h if self.stem is None else self.stem(h)

    # -- execution --------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Mean/std normalization of an RGB batch in [0, 1] (part of the exported graph)."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, parents=None, bn_deltas: Optional[torch.Tensor] = None,
                head_streams: Optional[Sequence[int]] = None) -> dict[str, torch.Tensor]:
        """Run the tree ``parents`` (default: identity) on a batch in [0, 1]; task -> output.

        ``head_streams[j]`` (default j) is the stream whose top node task j's head reads;
        only the PHN baseline's shared encoder (one R-ASPP for all heads) sets it.
        """
        if parents is None:
            parents = identity_table(self.num_layers, self.num_tasks)
        p = validate_parents(parents, self.num_layers, self.num_tasks, head_streams)
        used = used_nodes(p, head_streams)
        tops = list(range(self.num_tasks)) if head_streams is None else [int(k) for k in head_streams]
        out_size = (x.shape[2], x.shape[3])
        h = self.run_stem(self.normalize(x))
        feats: dict[tuple[int, int], torch.Tensor] = {}
        executed = 0
        for l in range(self.num_layers):
            for j in range(self.num_tasks):
                if not used[l, j]:
                    continue
                inp = h if l == 0 else feats[(l - 1, int(p[l, j]))]
                feats[(l, j)] = self.run_node(l, j, inp, bn_deltas)
                executed += 1
        self.executed_nodes = executed
        outs = {}
        for j, t in enumerate(self.tasks):
            low = None
            if self.low_level_layer is not None:
                low = feats[(self.low_level_layer, ancestor(p, tops[j], self.low_level_layer))]
            outs[t.name] = self.run_head(j, feats[(self.num_layers - 1, tops[j])], low, out_size, bn_deltas)
        return outs

    def forward_soft(self, x: torch.Tensor, nu: Sequence[torch.Tensor],
                     bn_deltas: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Supernet forward for stage 1: node (l, j) reads Σ_k ν^l[j, k] · out(l−1, k).

        ``nu`` holds L−1 row-stochastic (N, N) matrices. Every node runs. The DeepLab skip of
        task j is the expected ancestor feature: weights a^{L−1} = e_j, a^{l−1} = a^l ν^l.
        """
        if len(nu) != self.num_layers - 1:
            raise ValueError(f"nu has {len(nu)} layers, expected {self.num_layers - 1}")
        out_size = (x.shape[2], x.shape[3])
        h = self.run_stem(self.normalize(x))
        prev = [self.run_node(0, j, h, bn_deltas) for j in range(self.num_tasks)]
        layers = [prev]
        for l in range(1, self.num_layers):
            stacked = torch.stack(prev, dim=0)                       # N, B, C, H, W
            mixed = torch.einsum("jk,kbchw->jbchw", nu[l - 1], stacked)
            prev = [self.run_node(l, j, mixed[j], bn_deltas) for j in range(self.num_tasks)]
            layers.append(prev)
        self.executed_nodes = self.num_layers * self.num_tasks
        outs = {}
        for j, t in enumerate(self.tasks):
            low = None
            if self.low_level_layer is not None:
                a = torch.zeros(self.num_tasks, dtype=nu[0].dtype, device=nu[0].device)
                a[j] = 1.0
                for l in range(self.num_layers - 1, self.low_level_layer, -1):
                    a = a @ nu[l - 1]
                low = torch.einsum("k,kbchw->bchw", a, torch.stack(layers[self.low_level_layer], 0))
            outs[t.name] = self.run_head(j, prev[j], low, out_size, bn_deltas)
        return outs

    @torch.no_grad()
    def stream_features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per layer, per stream, node outputs of the identity tree (for RSA task affinity)."""
        h = self.run_stem(self.normalize(x))
        feats = []
        cur = [h] * self.num_tasks
        for l in range(self.num_layers):
            cur = [self.streams[j][l](cur[j]) for j in range(self.num_tasks)]
            feats.append(cur)
        return feats

    def freeze(self) -> "AnchorNet":
        """Eval mode and no gradients: the anchor is frozen during controller training."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def node_module(self, l: int, j: int) -> nn.Module:
        """The module of node (l, j)."""
        return self.streams[j][l]
