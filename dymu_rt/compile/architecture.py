"""The tree IR: a pruned, canonical parent table, and the static module that runs it.

:class:`Architecture` is what the build deduplicates on: the canonical parent table
(dead nodes -1), its stable id (:func:`dymu_rt.core.tree.topology_id` salted with the
model structure, so two presets never share ids), and its cost. :func:`materialize` turns
an anchor net + parent table (+ the weight hypernet's BN deltas) into a plain
``nn.Module`` holding only the nodes the tree uses, with parameter paths
``node{l}_{j}.<path>`` and ``head_<task>.<path>`` — the names the exported graph's
initializers keep (docs/INTERFACES.md).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.core.preference import make_preference
from dymu_rt.models.anchor import AnchorNet, node_name
from dymu_rt.models.cost import CostModel
from dymu_rt.models.layers import modulated_bns
from dymu_rt.core.tree import ancestor, canonicalize, topology_id, used_nodes, validate_parents
from dymu_rt.run.layout import RunDir
from dymu_rt.core import units


def topology_salt(preset) -> str:
    """Short hash of the model structure (backbone, head, tasks): part of every topology id.

    The runtime recomputes ids from ``manifest["topology_salt"]``; input size and training
    schedules are deliberately left out (they do not change which tree a table names).
    """
    d = preset.to_dict()
    blob = json.dumps({k: d[k] for k in ("backbone", "head", "tasks")}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One topology: canonical parent table, id, served tasks and cost at batch 1."""
    parents: tuple[tuple[int, ...], ...]
    id: str
    tasks: tuple[str, ...]
    params: int
    macs: int
    bn_slots: tuple[str, ...]
    flops_paper: int = 0        # the paper's "GFLOPs" x 1e9 (fvcore convention, dymu_rt.models.cost)

    @property
    def gmacs(self) -> float:
        """Conv + linear multiply-accumulates / 1e9 (the paper's "GFLOPs" are fvcore's larger count: gflops_paper)."""
        return units.gmacs(self.macs)

    @property
    def gflops_paper(self) -> float:
        """The paper's "GFLOPs": fvcore's count / 1e9 (MACs + BN, upsampling, pooling)."""
        return self.flops_paper / 1e9

    @property
    def gflops(self) -> float:
        """Floating-point operations / 1e9 = 2 x MACs / 1e9."""
        return units.gflops(self.macs)

    @property
    def table(self) -> np.ndarray:
        """The canonical parent table as an int64 (L, N) array."""
        return np.asarray(self.parents, dtype=np.int64)

    @staticmethod
    def from_parents(anchor: AnchorNet, parents, salt: str,
                     cost_model: Optional[CostModel] = None) -> "Architecture":
        """Validate, prune and canonicalize ``parents``; cost it with ``cost_model``."""
        p = validate_parents(parents, anchor.num_layers, anchor.num_tasks)
        canon = canonicalize(p)
        cost = (cost_model or CostModel(anchor)).tree_cost(canon)
        used = used_nodes(canon)
        slots = tuple(s.name for s in anchor.bn_layout if anchor.slot_alive(s, used))
        return Architecture(parents=tuple(tuple(int(v) for v in row) for row in canon),
                            id=topology_id(canon, salt), tasks=tuple(anchor.task_names),
                            params=cost.params, macs=cost.macs, bn_slots=slots,
                            flops_paper=cost.flops_paper)


class MaterializedTree(nn.Module):
    """A static multi-task net for one tree: used nodes only, executed in layer order.

    Input: RGB batch in [0, 1] (mean/std normalization is inside); output: a tuple of
    raw task outputs in task order (``task_names``).
    """

    def __init__(self, anchor: AnchorNet, parents: np.ndarray) -> None:
        super().__init__()
        canon = canonicalize(parents)
        used = used_nodes(canon)
        L, N = canon.shape
        self.task_names = tuple(anchor.task_names)
        self.register_buffer("mean", anchor.mean.detach().clone())
        self.register_buffer("std", anchor.std.detach().clone())
        # The shared stem (if any) runs once on the normalized image; row-0 nodes read it.
        self.stem = copy.deepcopy(anchor.stem) if anchor.stem is not None else None
        # (name, input name or None for the image); layer-major order is topological.
        self.plan: list[tuple[str, Optional[str]]] = []
        for l in range(L):
            for j in range(N):
                if used[l, j]:
                    self.add_module(node_name(l, j), copy.deepcopy(anchor.node_module(l, j)))
                    src = None if l == 0 else node_name(l - 1, int(canon[l, j]))
                    self.plan.append((node_name(l, j), src))
        self.heads_plan: list[tuple[str, str, Optional[str]]] = []
        for j, task in enumerate(self.task_names):
            if "." in task:
                raise ValueError(f"task name {task!r} contains '.', which breaks module paths")
            self.add_module(f"head_{task}", copy.deepcopy(anchor.heads[task]))
            low = None
            if anchor.low_level_layer is not None:
                low = node_name(anchor.low_level_layer, ancestor(canon, j, anchor.low_level_layer))
            self.heads_plan.append((f"head_{task}", node_name(L - 1, j), low))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        out_size = (x.shape[2], x.shape[3])
        h = (x - self.mean) / self.std
        if self.stem is not None:
            h = self.stem(h)
        feats: dict[str, torch.Tensor] = {}
        for name, src in self.plan:
            feats[name] = getattr(self, name)(h if src is None else feats[src])
        return tuple(getattr(self, head)(feats[top], None if low is None else feats[low], out_size)
                     for head, top, low in self.heads_plan)


@torch.no_grad()
def materialize(anchor: AnchorNet, parents, bn_deltas: Optional[torch.Tensor] = None) -> MaterializedTree:
    """Deep-copy the nodes of tree ``parents`` into a :class:`MaterializedTree` (eval mode).

    ``bn_deltas`` (FloatTensor[D], the weight hypernet's output) is baked into the copied
    BNs' affine parameters (γ+Δγ, β+Δβ), so the module computes exactly
    ``anchor.forward(x, parents, bn_deltas)`` and :func:`dymu_rt.compile.fold_modules.fold_bn`
    needs no deltas afterwards. The anchor itself is not modified.
    """
    p = validate_parents(parents, anchor.num_layers, anchor.num_tasks)
    tree = MaterializedTree(anchor, p)
    if bn_deltas is not None:
        bn_deltas = torch.as_tensor(bn_deltas, dtype=torch.float32).reshape(-1)
        if bn_deltas.numel() != anchor.bn_delta_size:
            raise ValueError(f"bn_deltas has size {bn_deltas.numel()}, expected {anchor.bn_delta_size}")
        used = used_nodes(canonicalize(p))
        units = [(l, j, getattr(tree, node_name(l, j))) for l in range(anchor.num_layers)
                 for j in range(anchor.num_tasks) if used[l, j]]
        units += [(anchor.num_layers, j, getattr(tree, f"head_{t}")) for j, t in enumerate(anchor.task_names)]
        for l, j, module in units:
            for (_, bn), (dg, db) in zip(modulated_bns(module), anchor.node_deltas(bn_deltas, l, j), strict=True):
                bn.weight.add_(dg.to(bn.weight.dtype))
                bn.bias.add_(db.to(bn.bias.dtype))
    for prm in tree.parameters():
        prm.requires_grad_(False)
    return tree.eval()


@torch.no_grad()
def with_bn_deltas(anchor: AnchorNet, bn_deltas) -> AnchorNet:
    """A copy of ``anchor`` (eval mode, no gradients) whose every modulated BN carries the
    weight hypernet's deltas (γ+Δγ, β+Δβ): the fixed weights of one preference, for an
    architecture lowered to a static graph (:func:`dymu_rt.models.graph.lower_tree`)."""
    bn_deltas = torch.as_tensor(bn_deltas, dtype=torch.float32).reshape(-1)
    if bn_deltas.numel() != anchor.bn_delta_size:
        raise ValueError(f"bn_deltas has size {bn_deltas.numel()}, expected {anchor.bn_delta_size}")
    net = copy.deepcopy(anchor).eval()
    L = net.num_layers
    for l in range(L + 1):                        # layer L: the heads
        for j in range(net.num_tasks):
            module = net.heads[net.task_names[j]] if l == L else net.streams[j][l]
            for (_, bn), (dg, db) in zip(modulated_bns(module), anchor.node_deltas(bn_deltas, l, j), strict=True):
                bn.weight.add_(dg.to(bn.weight.dtype))
                bn.bias.add_(db.to(bn.bias.dtype))
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net


def slots_of(anchor: AnchorNet, parents) -> list:
    """The BNSlots of the nodes tree ``parents`` uses, in bn_layout order."""
    used = used_nodes(canonicalize(parents))
    return [s for s in anchor.bn_layout if anchor.slot_alive(s, used)]


def preference_tensors(r: Sequence[float], c: float,
                       n_tasks: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hypernet inputs for one preference, as the trainer passes them: r [N], c [] float32.

    (r, c) is validated by :func:`dymu_rt.core.preference.make_preference` (r on the
    simplex with ``n_tasks`` entries — default: as many as given —, c in [0, 1]); a bad
    preference raises :class:`~dymu_rt.core.errors.ValidationError`.
    """

    if n_tasks is None:
        try:
            n_tasks = len(r.split(",")) if isinstance(r, str) else len(r)
        except TypeError:
            n_tasks = 0          # not a sequence: make_preference refuses it with its message
    pref = make_preference(r, c, n_tasks)
    return torch.tensor(pref.r, dtype=torch.float32), torch.tensor(pref.c, dtype=torch.float32)


@torch.no_grad()
def materialize_run(run, r: Sequence[float], c: float) -> tuple[Architecture, MaterializedTree]:
    """The tree a trained run picks at preference (r, c), with its BN deltas baked in.

    ``run`` is a :class:`dymu_rt.run.layout.RunDir` (or a path to one). Without a
    trained weight hypernet the anchor's BNs are used unmodulated. (r, c) is validated
    (:func:`preference_tensors`): a bad preference raises ValidationError.
    """

    run = run if isinstance(run, RunDir) else RunDir(run)
    rt, ct = preference_tensors(r, c, len(run.preset().tasks))   # refuse a bad (r, c) before loading
    preset, anchor, edge, weight = run.load_all()
    parents = edge.architecture(rt, ct)
    deltas = weight(rt, ct).reshape(-1) if weight is not None else None
    arch = Architecture.from_parents(anchor, parents, topology_salt(preset))
    return arch, materialize(anchor, parents, deltas)
