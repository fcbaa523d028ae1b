"""The static-graph IR: one multi-task architecture as a DAG of module calls.

A DYMU tree (:mod:`dymu_rt.compile.architecture`) is one parent per node. AdaShare
(Sun et al., NeurIPS 2020) and the flow-restricted DAG network (Choi & Im, CVPR 2023)
end in architectures a parent table cannot say: a block's weights used by several tasks
on *different* inputs, skipped blocks, and states that sum several weighted inputs.
:class:`StaticGraph` says all of it with three things:

* a :class:`GraphNode` applies one module of an *owner* model (named by its module path,
  e.g. ``blocks.3`` or ``edges.e1_2``; ``None`` = no module) to the weighted sum of its
  inputs, ``Σ w_i · x_i``; the source ``"image"`` is the normalized input image;
* a module path may appear in several nodes: its weights are **shared** (one tensor in
  the exported graph and in the bundle's weight file);
* a :class:`GraphHead` runs a task head on a node (and a low-level skip node for
  DeepLab heads).

:func:`run_graph` executes a graph on the owner's own modules (what the training code
uses after the architecture is fixed); :class:`GraphModule` holds copies of the used
modules and is what the compiler folds (:func:`dymu_rt.compile.fold_modules.fold_bn`) and exports
(:func:`dymu_rt.compile.export.export_tree`): the same compiler as for DYMU trees.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from dymu_rt.models.anchor import node_name
from dymu_rt.models.cost import Cost, _module_costs
from dymu_rt.core.tree import ancestor, canonicalize, used_nodes, validate_parents

IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """``name`` = module(Σ w·input) (module ``None``: the weighted sum itself)."""

    name: str
    module: Optional[str]
    inputs: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class GraphHead:
    """Task ``task``'s head (owner module path ``module``) on node ``top`` (+ skip ``low``)."""

    task: str
    module: str
    top: str
    low: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class StaticGraph:
    """One static multi-task architecture (nodes in topological order, one head per task)."""

    method: str
    nodes: tuple[GraphNode, ...]
    heads: tuple[GraphHead, ...]

    def __post_init__(self) -> None:
        seen = {IMAGE}
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"graph node {n.name!r} is defined twice")
            if not n.inputs:
                raise ValueError(f"graph node {n.name!r} has no inputs")
            for src, _ in n.inputs:
                if src not in seen:
                    raise ValueError(f"graph node {n.name!r} reads {src!r} before it is computed")
            seen.add(n.name)
        for h in self.heads:
            for src in (h.top, h.low):
                if src is not None and src not in seen:
                    raise ValueError(f"head {h.task!r} reads unknown node {src!r}")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(h.task for h in self.heads)

    def modules_used(self) -> list[str]:
        """Owner module paths the graph calls (nodes, then heads), each once."""
        out: list[str] = []
        for m in [n.module for n in self.nodes] + [h.module for h in self.heads]:
            if m is not None and m not in out:
                out.append(m)
        return out

    def shared_modules(self) -> list[str]:
        """Module paths called by more than one node (weights shared across inputs/tasks)."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            if n.module is not None:
                counts[n.module] = counts.get(n.module, 0) + 1
        return [m for m, k in counts.items() if k > 1]

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method,
                "nodes": [{"name": n.name, "module": n.module, "inputs": [[s, w] for s, w in n.inputs]}
                          for n in self.nodes],
                "heads": [dataclasses.asdict(h) for h in self.heads]}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "StaticGraph":
        try:
            return StaticGraph(d["method"], tuple(GraphNode(n["name"], n["module"],
                                                            tuple((str(s), float(w)) for s, w in n["inputs"]))
                                                  for n in d["nodes"]),
                               tuple(GraphHead(**h) for h in d["heads"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed static graph ({e})") from None

    @property
    def id(self) -> str:
        """Stable topology id: 16 hex digits of the graph's sha256 (method included), the
        form of a DYMU topology id (:func:`dymu_rt.core.tree.topology_id`), so it passes
        the bundle's id check (:func:`dymu_rt.bundle.paths.check_topology_id`). The method
        itself is the manifest's ``static.method``."""
        blob = json.dumps(self.to_json(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def prune_graph(graph: StaticGraph) -> StaticGraph:
    """``graph`` without the nodes no head reads, directly or through other nodes.

    Such a node changes no output (a DAG state that no task's read-out reaches, with the
    edges into it): the reduced network is the read-in -> read-out sub-network (Choi & Im,
    Alg. 1). Left in, it would still run in the graph module (and count in its cost) while
    the ONNX export drops it. Names and order of the kept nodes are unchanged, so a graph
    without dead nodes is returned as it is (same id).
    """
    live = {src for h in graph.heads for src in (h.top, h.low) if src is not None}
    for n in reversed(graph.nodes):
        if n.name in live:
            live.update(src for src, _ in n.inputs)
    nodes = tuple(n for n in graph.nodes if n.name in live)
    return graph if len(nodes) == len(graph.nodes) else StaticGraph(graph.method, nodes, graph.heads)


def _weighted(feats: dict[str, torch.Tensor], inputs: Sequence[tuple[str, float]]) -> torch.Tensor:
    if len(inputs) == 1 and inputs[0][1] == 1.0:
        return feats[inputs[0][0]]
    acc = None
    for src, w in inputs:
        term = feats[src] * w
        acc = term if acc is None else acc + term
    return acc


def run_graph(graph: StaticGraph, module_of, h: torch.Tensor, out_size) -> dict[str, torch.Tensor]:
    """Execute ``graph`` on normalized images ``h``; ``module_of(path)`` gives the modules.

    Returns task -> raw output. Heads are called as ``head(top, low, out_size)``.
    """
    feats = {IMAGE: h}
    for n in graph.nodes:
        x = _weighted(feats, n.inputs)
        feats[n.name] = x if n.module is None else module_of(n.module)(x)
    return {hd.task: module_of(hd.module)(feats[hd.top], None if hd.low is None else feats[hd.low], out_size)
            for hd in graph.heads}


def _key(path: str) -> str:
    return path.replace(".", "__")


class GraphModule(nn.Module):
    """A static graph as a plain module: copies of the used modules, mean/std inside.

    Input: RGB batch in [0, 1]; output: tuple of raw task outputs in ``task_names`` order
    (the contract of :class:`~dymu_rt.compile.architecture.MaterializedTree`). Module
    ``blocks.3`` of the owner lives at ``m.blocks__3``, so ONNX initializers are named
    ``m.blocks__3.conv1.conv.weight``; a shared module is one set of initializers.
    """

    def __init__(self, owner: nn.Module, graph: StaticGraph, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.graph = graph
        self.task_names = graph.tasks
        self.register_buffer("mean", mean.detach().clone().reshape(1, 3, 1, 1))
        self.register_buffer("std", std.detach().clone().reshape(1, 3, 1, 1))
        used = graph.modules_used()
        # A path inside another used module (``blocks.2.downsample`` beside ``blocks.2``) is
        # looked up in that module's copy, so both calls share one set of weights.
        self._root = {p: min((q for q in used if p == q or p.startswith(q + ".")), key=len) for p in used}
        # Registered first, so that a shared submodule's one name (module walks and the
        # exporter's scopes name a module once, by its first path) is the alias, which
        # spells the whole owner path: ``alias.blocks__2__downsample``.
        self.alias = nn.ModuleDict()
        self.m = nn.ModuleDict({_key(q): copy.deepcopy(owner.get_submodule(q))
                                for q in dict.fromkeys(self._root.values())})
        for p, q in self._root.items():
            if p != q:
                self.alias[_key(p)] = self.m[_key(q)].get_submodule(p[len(q) + 1:])

    def module_of(self, path: str) -> nn.Module:
        """The (copied) module of owner path ``path``."""
        root = self._root[path]
        return self.m[_key(root)] if path == root else self.alias[_key(path)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: D102
        out = run_graph(self.graph, self.module_of, (x - self.mean) / self.std, (x.shape[2], x.shape[3]))
        return tuple(out[t] for t in self.task_names)


@torch.no_grad()
def materialize_graph(owner: nn.Module, graph: StaticGraph, mean, std) -> GraphModule:
    """:class:`GraphModule` of ``graph`` over ``owner``'s modules, eval mode, no gradients."""
    g = GraphModule(owner, graph, torch.as_tensor(mean, dtype=torch.float32),
                    torch.as_tensor(std, dtype=torch.float32))
    for p in g.parameters():
        p.requires_grad_(False)
    return g.eval()


@torch.no_grad()
def graph_cost(module: nn.Module, input_size: tuple[int, int]) -> Cost:
    """:class:`~dymu_rt.models.cost.Cost` at batch 1 (the conventions of
    :mod:`dymu_rt.models.cost`: MACs of conv + linear, and the paper's fvcore count):
    parameters counted once (shared weights too), MACs of every call (a shared block run on
    two inputs costs twice). Any module works (a GraphModule, a MaterializedTree)."""
    h, w = input_size
    macs, flops_paper = _module_costs(module, (torch.zeros(1, 3, h, w),))
    params = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    return Cost(int(params), int(macs), int(flops_paper))


def lower_tree(anchor, parents, head_streams=None) -> StaticGraph:
    """A DYMU tree as a static graph: node (l, j) = module ``streams.<j>.<l>`` on its parent.

    The tree IR (:mod:`dymu_rt.compile.architecture`) stays what DYMU bundles are built from
    (its BN slots are what a preference binds); this lowering shows the static graph is the
    more general form of the same thing (tests check both execute identically).
    ``head_streams[j]`` (default j): the stream whose top node task j's head reads, as in
    :meth:`dymu_rt.models.anchor.AnchorNet.forward` (the PHN baseline's shared encoder).
    """
    if head_streams is None:
        canon = canonicalize(parents)
    else:
        canon = validate_parents(parents, anchor.num_layers, anchor.num_tasks, head_streams)
    used = used_nodes(canon, head_streams)
    tops = list(range(canon.shape[1])) if head_streams is None else [int(k) for k in head_streams]
    L, N = canon.shape
    nodes = []
    # The shared stem (AnchorNet.stem, the paper nets') runs once before every stream.
    first = IMAGE
    if getattr(anchor, "stem", None) is not None:
        nodes.append(GraphNode("stem", "stem", ((IMAGE, 1.0),)))
        first = "stem"
    for l in range(L):
        for j in range(N):
            if used[l, j]:
                src = first if l == 0 else node_name(l - 1, int(canon[l, j]))
                nodes.append(GraphNode(node_name(l, j), f"streams.{j}.{l}", ((src, 1.0),)))
    heads = []
    for j, task in enumerate(anchor.task_names):
        low = None if anchor.low_level_layer is None else node_name(anchor.low_level_layer,
                                                                    ancestor(canon, tops[j], anchor.low_level_layer))
        heads.append(GraphHead(task, f"heads.{task}", node_name(L - 1, tops[j]), low))
    return StaticGraph("dymu-tree", tuple(nodes), tuple(heads))
