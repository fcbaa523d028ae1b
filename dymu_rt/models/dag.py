"""The flow-restricted DAG central network (Choi & Im, CVPR 2023, Sec. 3).

Hidden states v_1..v_N (topologically sorted, all of one shape) with an operation
e_ij (ConvBN 3x3 + ReLU, weights θ_ij shared by the tasks) for every i < j with
j − i <= M (**flow restriction**, Sec. 3.1). A shared stem gives v_0 (and the stride-4
feature the DeepLab heads' skip reads). Per task k, with task-specific weights:

* read-in  (eq. 3): v_0 enters every state with weight σ(α_i^k);
* states   (eq. 4): v_j^k = 1/In(v_j^k) · [σ(α_j^k) v_0 + Σ_i σ(γ_ij^k) e_ij(v_i^k)] — we count
  the read-in as one of v_j's inputs, so v_1 (no edge reaches it) is σ(α_1^k) v_0;
* read-out (eq. 5): v_L^k = Σ_i σ(β_i^k) v_i^k, then the task head (eq. 6).

:meth:`DagNet.forward` takes the three weight tensors directly: sigmoids of the
upper-level parameters in the warm-up/search stages, the 0/1 masks of the flow-based
reduction (Algorithm 1, :mod:`dymu_rt.training.dag`) in the fine-tune stage, where the
paper drops the sigmoid and In counts the kept inputs only.

Two layouts (``DagSpec.layout``):

* ``backbone`` — the paper's network (Sec. 4.1: "12 hidden states, the same as the VGG-16,
  except for the max-pooled state", DeepLab-v2 heads): the preset's VGG-16 backbone
  (:func:`dymu_rt.models.backbones.vgg16_nodes`, DeepLab-v2's output stride 8) gives v_0
  (conv1_1, the shared stem) and the shapes of v_1..v_12 (conv1_2 .. conv5_3: 64 to 512
  channels, stride 1 to 8, conv5 dilated). States differ in shape, so every layer adapts:
  e_ij = the 3x3/2 max pools from v_i's stride to v_j's, then 3x3 ConvBN (v_j's width and
  dilation) + ReLU — the VGG layer that makes v_j, one per edge; the read-in layer of v_j is
  the same from v_0 (the paper calls read-in/read-out *layers*); the read-out of v_i is the
  identity when v_i has the last state's shape, else pools + 1x1 ConvBN to it + ReLU. The
  read-in layers run once per image (v_0 is shared), the rest once per task.
* ``uniform`` — our CPU variant on the synth presets: N states of one shape (stride 8, a
  width derived from the preset's backbone), read-in and read-out the identity, a stride-4
  stem feature for the presets' DeepLabv3+ decoder heads.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.models.backbones import NodeInfo, build_nodes, build_stem, vgg_pool
from dymu_rt.models.graph import IMAGE, GraphHead, GraphNode, StaticGraph, prune_graph
from dymu_rt.models.heads import build_head, head_uses_skip
from dymu_rt.models.layers import ConvBN

LAYOUTS = ("uniform", "backbone")


@dataclasses.dataclass(frozen=True)
class DagSpec:
    """Central network shape: N hidden states and the flow constant M; ``uniform``: states
    of ``channels`` at stride 8 (``low_channels``: the decoder skip); ``backbone``: states
    shaped as the preset backbone's layers (``states`` must equal their number)."""

    states: int = 8
    flow: int = 3
    channels: int = 32
    low_channels: int = 16
    layout: str = "uniform"


def default_spec(preset, flow: int, states: int = 0, channels: int = 0) -> DagSpec:
    """The central network for ``preset``: its VGG-16 layers (``backbone`` layout, the
    paper's network) when it has a VGG-16 backbone, else the ``uniform`` variant with
    ``states`` (0 = 8) states at ``channels`` (0 = half the backbone's widest layer)."""
    if preset.backbone.kind == "vgg16":
        n = len(build_nodes(preset.backbone)[1])
        if states not in (0, n):
            raise ValueError(f"preset '{preset.name}': the VGG-16 central network has {n} states, not {states}")
        return DagSpec(states=n, flow=flow, channels=0, low_channels=0, layout="backbone")
    widest = max(i.out_channels for i in build_nodes(preset.backbone)[1])
    c = channels or max(16, widest // 2)
    return DagSpec(states=states or 8, flow=flow, channels=c, low_channels=max(8, c // 2))


def allowed_edges(n_states: int, flow: int) -> list[tuple[int, int]]:
    """The edges (i, j), 1 <= i < j <= N, that the flow restriction j − i <= M keeps."""
    return [(i, j) for j in range(1, n_states + 1) for i in range(1, j) if j - i <= flow]


class EdgeOp(nn.Module):
    """e_ij: ConvBN 3x3 + ReLU (a VGG-style operation between two states)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = ConvBN(c, c, 3, modulated=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.relu(self.conv(x))


class DagLayer(nn.Module):
    """A layer between states of different shapes (``backbone`` layout): log2(``down``)
    3x3/2 max pools (the backbone's own pools: every path to a stride gives the same map
    size), then a ``k``x``k`` ConvBN at ``dilation`` + ReLU."""

    def __init__(self, cin: int, cout: int, down: int, dilation: int = 1, k: int = 3) -> None:
        super().__init__()
        if down < 1 or down & (down - 1):
            raise ValueError(f"a DAG layer downsamples by a power of 2, got {down}")
        self.pool = nn.Sequential(*[vgg_pool(2) for _ in range(down.bit_length() - 1)])
        self.conv = ConvBN(cin, cout, k, dilation=dilation if k > 1 else 1, modulated=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.relu(self.conv(self.pool(x)))


def state_shapes(preset, spec: "DagSpec") -> list[NodeInfo]:
    """(channels, stride, dilation) of v_0 .. v_N for ``spec`` on ``preset``."""
    if spec.layout == "uniform":
        return [NodeInfo(spec.channels, 8)] * (spec.states + 1)
    if spec.layout != "backbone":
        raise ValueError(f"unknown DAG layout {spec.layout!r}; expected one of {', '.join(LAYOUTS)}")
    if preset.backbone.kind != "vgg16":
        raise ValueError(f"the backbone DAG layout takes VGG-16's layers as states; preset "
                         f"'{preset.name}' has a {preset.backbone.kind} backbone")
    stem = build_stem(preset.backbone)
    infos = build_nodes(preset.backbone)[1]
    if spec.states != len(infos):
        raise ValueError(f"preset '{preset.name}': the backbone layout has {len(infos)} states, not {spec.states}")
    shapes = [stem[1]] + list(infos)
    for a, b in zip(shapes, shapes[1:]):
        if b.stride < a.stride:
            raise ValueError("DAG states must not decrease in stride")
    return shapes


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, cout, 3, stride=2, modulated=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.relu(self.conv(x))


class DagNet(nn.Module):
    """Stem, flow-restricted edges, heads and the upper-level parameters A, B, Γ."""

    def __init__(self, preset, spec: DagSpec) -> None:
        super().__init__()
        if spec.states < 2 or spec.flow < 1:
            raise ValueError(f"DAG needs >= 2 states and flow >= 1, got {spec.states}, {spec.flow}")
        self.spec = spec
        self.task_names = [t.name for t in preset.tasks]
        self.input_size = tuple(preset.input_size)
        self.edge_list = allowed_edges(spec.states, spec.flow)
        shapes = state_shapes(preset, spec)
        if spec.layout == "uniform":
            c, lc = spec.channels, spec.low_channels
            # Stride 4 (the DeepLab skip), then stride 8 = v_0.
            self.stem_low = nn.Sequential(_Stage(3, lc), _Stage(lc, lc))
            self.stem = _Stage(lc, c)
            self.edges = nn.ModuleDict({f"e{i}_{j}": EdgeOp(c) for i, j in self.edge_list})
            self.readins = self.readouts = None
            self.heads = nn.ModuleDict({t.name: build_head(preset.head, c, lc, t.out_channels)
                                        for t in preset.tasks})
        else:
            if head_uses_skip(preset.head):
                raise ValueError(f"preset '{preset.name}': the backbone DAG layout has no stride-4 skip for "
                                 f"'{preset.head.kind}' heads; use deeplabv2 or linear heads")
            self.stem_low = None
            self.stem = build_stem(preset.backbone)[0]
            last = shapes[-1]

            def layer(a: NodeInfo, b: NodeInfo, k: int = 3) -> DagLayer:
                return DagLayer(a.out_channels, b.out_channels, b.stride // a.stride, b.dilation, k)

            self.edges = nn.ModuleDict({f"e{i}_{j}": layer(shapes[i], shapes[j]) for i, j in self.edge_list})
            self.readins = nn.ModuleDict({f"r{j}": layer(shapes[0], shapes[j]) for j in range(1, spec.states + 1)})
            self.readouts = nn.ModuleDict({f"o{i}": layer(shapes[i], last, k=1) for i in range(1, spec.states + 1)
                                           if (shapes[i].out_channels, shapes[i].stride) !=
                                           (last.out_channels, last.stride)})
            self.heads = nn.ModuleDict({t.name: build_head(preset.head, last.out_channels, 0, t.out_channels)
                                        for t in preset.tasks})
        K, N, E = len(self.task_names), spec.states, len(self.edge_list)
        # Upper-level parameters, 0 (σ = 0.5) at the start and frozen in the warm-up.
        self.alpha = nn.Parameter(torch.zeros(K, N))
        self.beta = nn.Parameter(torch.zeros(K, N))
        self.gamma = nn.Parameter(torch.zeros(K, E))
        self.register_buffer("mean", torch.tensor(preset.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preset.std, dtype=torch.float32).view(1, 3, 1, 1))

    def upper_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, self.beta, self.gamma]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n not in ("alpha", "beta", "gamma")]

    def soft_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """σ(A), σ(B), σ(Γ) (eqs. 3-5)."""
        return torch.sigmoid(self.alpha), torch.sigmoid(self.beta), torch.sigmoid(self.gamma)

    def forward(self, x: torch.Tensor, weights=None) -> dict[str, torch.Tensor]:
        """Task -> raw output with read-in/read-out/edge weights ``weights`` = (A [K, N],
        B [K, N], G [K, E]) (default: the sigmoids). Zero weights drop the input entirely
        (it neither runs nor counts in In), which is what the reduced graph computes."""
        A, B, G = self.soft_weights() if weights is None else weights
        out_size = (x.shape[2], x.shape[3])
        h = (x - self.mean) / self.std
        low = self.stem_low(h) if self.stem_low is not None else None
        v0 = self.stem(low if low is not None else h)
        readin: dict[int, torch.Tensor] = {}

        def read_in(j: int) -> torch.Tensor:
            # v_0 through v_j's read-in layer: the same for every task, computed once.
            if self.readins is None:
                return v0
            if j not in readin:
                readin[j] = self.readins[f"r{j}"](v0)
            return readin[j]

        def read_out(i: int, v: torch.Tensor) -> torch.Tensor:
            return self.readouts[f"o{i}"](v) if self.readouts is not None and f"o{i}" in self.readouts else v

        N = self.spec.states
        into: dict[int, list[tuple[int, int]]] = {j: [] for j in range(1, N + 1)}
        for e, (i, j) in enumerate(self.edge_list):
            into[j].append((e, i))
        onA, onB, onG = _on(A), _on(B), _on(G)
        outs = {}
        for k, task in enumerate(self.task_names):
            states: dict[int, Optional[torch.Tensor]] = {}
            for j in range(1, N + 1):
                terms = []
                # The weighted sums in fp32 under autocast (a no-op otherwise): the gradients
                # of A, B, Γ are sums over whole activations, too long for fp16.
                if onA[k][j - 1]:
                    terms.append(A[k, j - 1] * read_in(j).float())
                for e, i in into[j]:
                    if onG[k][e] and states[i] is not None:
                        terms.append(G[k, e] * self.edges[f"e{i}_{j}"](states[i]).float())
                states[j] = None if not terms else sum(terms[1:], terms[0]) / len(terms)
            top = None
            for i in range(1, N + 1):
                if onB[k][i - 1] and states[i] is not None:
                    t = B[k, i - 1] * read_out(i, states[i]).float()
                    top = t if top is None else top + t
            if top is None:
                raise ValueError(f"task {task!r}: no state reaches the read-out")
            outs[task] = self.heads[task](top, low, out_size)
        return outs


def _on(w: torch.Tensor) -> list[list[bool]]:
    """Which weights of ``w`` [K, n] take part: all of a tensor that needs a gradient,
    else the non-zero ones, read at once (one device sync at most per tensor, none for the
    CPU masks of the fine-tune) rather than one ``float()`` per weight."""
    if w.requires_grad:
        return [[True] * w.shape[1] for _ in range(w.shape[0])]
    return w.detach().ne(0).cpu().tolist()


def lower_masks(net: DagNet, A, B, G) -> StaticGraph:
    """The static graph of reduced 0/1 masks A [K, N], B [K, N], G [K, E].

    Exactly :meth:`DagNet.forward` with those masks: a state is the mean of its kept
    inputs (weight 1/In each), the read-out the sum of the kept states. Tasks whose
    states have the same upstream sub-graph share their computation; an edge used by
    several tasks on different inputs shares its weights. Nodes no head reads are left out
    (:func:`~dymu_rt.models.graph.prune_graph`).
    """
    A, B, G = (np.asarray(t, dtype=np.float64) for t in (A, B, G))
    K, N = len(net.task_names), net.spec.states
    if net.stem_low is not None:
        nodes = [GraphNode("low", "stem_low", ((IMAGE, 1.0),)), GraphNode("v0", "stem", (("low", 1.0),))]
    else:
        nodes = [GraphNode("v0", "stem", ((IMAGE, 1.0),))]
    by_sig: dict[tuple, str] = {}

    def node(sig: tuple, make) -> str:
        if sig not in by_sig:
            nodes.append(make(f"n{len(by_sig)}"))
            by_sig[sig] = nodes[-1].name
        return by_sig[sig]

    heads = []
    for k, task in enumerate(net.task_names):
        state: dict[int, Optional[tuple[str, tuple]]] = {}
        for j in range(1, N + 1):
            ins: list[tuple[str, tuple]] = []
            if A[k, j - 1] != 0:
                if net.readins is None:
                    ins.append(("v0", ("v0",)))
                else:
                    rsig = ("readin", j)
                    ins.append((node(rsig, lambda n, j=j: GraphNode(n, f"readins.r{j}", (("v0", 1.0),))), rsig))
            for e, (i, jj) in enumerate(net.edge_list):
                if jj == j and G[k, e] != 0 and state.get(i) is not None:
                    src, ssig = state[i]
                    esig = ("edge", i, j, ssig)
                    ins.append((node(esig, lambda n, i=i, j=j, src=src: GraphNode(n, f"edges.e{i}_{j}",
                                                                               ((src, 1.0),))), esig))
            if not ins:
                state[j] = None
                continue
            if len(ins) == 1:
                state[j] = ins[0]
                continue
            sig = ("state", j, tuple(s for _, s in ins))
            w = 1.0 / len(ins)
            state[j] = (node(sig, lambda n, ins=ins, w=w: GraphNode(n, None, tuple((s, w) for s, _ in ins))), sig)
        kept = []
        for i in range(1, N + 1):
            if B[k, i - 1] == 0 or state[i] is None:
                continue
            if net.readouts is not None and f"o{i}" in net.readouts:
                src, ssig = state[i]
                osig = ("readout_layer", i, ssig)
                kept.append((node(osig, lambda n, i=i, src=src: GraphNode(n, f"readouts.o{i}", ((src, 1.0),))), osig))
            else:
                kept.append(state[i])
        if not kept:
            raise ValueError(f"task {task!r}: no state reaches the read-out")
        if len(kept) == 1:
            top = kept[0][0]
        else:
            sig = ("readout", tuple(s for _, s in kept))
            top = node(sig, lambda n, kept=kept: GraphNode(n, None, tuple((s, 1.0) for s, _ in kept)))
        heads.append(GraphHead(task, f"heads.{task}", top, "low" if net.stem_low is not None else None))
    # A state whose inputs the masks keep but that no task's read-out reaches (hand-made
    # masks; the trainer's reduction never keeps one) changes no output: left out, so the
    # graph computes, costs and exports only what the heads read (Alg. 1's reduced network).
    return prune_graph(StaticGraph("dag", tuple(nodes), tuple(heads)))
