"""The controller: edge hypernet h(r, c) and weight hypernet h̄(r, c) (paper §3.2, §3.4).

Both read the preference embedding p = Σ_i r_i e_i + c e_c (learned embeddings, dim 32).

* :class:`EdgeHypernet`: p -> MLP (2 hidden layers of 100, ReLU) -> L-1 linear heads of
  N x N logits. Head l-1 gives row l of the parent table (row 0 is the fixed stem); row j of
  a head is the parent distribution of node (l, j). At inference the argmax parent of every
  node is the maximum-likelihood tree (:meth:`EdgeHypernet.architecture`).
* :class:`WeightHypernet`: p -> MLP (3 hidden layers of 100, ReLU) -> the flat BN delta
  vector [D] of docs/INTERFACES.md "BN modulation" (Δγ, Δβ per modulated BN slot).

Calling convention (the trainer's): r Tensor[N] with c Tensor[] (or a float) gives one
output; r Tensor[B, N] with c Tensor[B] / [B, 1] / [] gives a batch. ONNX (the bundle's
controller/*.onnx, :func:`export_onnx`): inputs ``r`` [1, N] and ``c`` [1, 1] float32;
outputs ``logits`` [L-1, N, N] (edge) and ``deltas`` [D] (weight), batch dim dropped.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from dymu_rt.core.tree import canonicalize
from dymu_rt.core.io import atomic_path

# Logit margin of a node's own stream at initialization (see EdgeHypernet.__init__).
IDENTITY_PRIOR = 4.0
ONNX_OPSET = 17
ONNX_IR_VERSION = 10       # onnxruntime 1.31 loads IR <= 10; onnx 1.23 would write IR 14


def _as_batch(r, c, n_tasks: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(r [B, N], c [B], batched?) from the accepted input shapes."""
    r = torch.as_tensor(r, dtype=torch.float32)
    c = torch.as_tensor(c, dtype=torch.float32, device=r.device)
    if r.dim() not in (1, 2) or r.shape[-1] != n_tasks:
        raise ValueError(f"r must have shape [{n_tasks}] or [B, {n_tasks}], got {list(r.shape)}")
    batched = r.dim() == 2
    r2 = r if batched else r.unsqueeze(0)
    c1 = c.reshape(-1)
    if c1.numel() == 1:
        c1 = c1.expand(r2.shape[0])
    elif c1.numel() != r2.shape[0] or (c.dim() == 2 and c.shape[1] != 1) or c.dim() > 2:
        raise ValueError(f"c must have shape [], [B] or [B, 1] with B = {r2.shape[0]}, got {list(c.shape)}")
    return r2, c1, batched


def _mlp(dim: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers)


class PreferenceEmbedding(nn.Module):
    """p = Σ_i r_i e_i + c e_c with learned e_1..e_N, e_c in R^dim (paper eq. for h's input)."""

    def __init__(self, n_tasks: int, dim: int = 32) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.task_embeddings = nn.Parameter(torch.randn(n_tasks, dim))
        self.resource_embedding = nn.Parameter(torch.randn(dim))

    def forward(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """r [B, N], c [B] -> p [B, dim]."""
        return r @ self.task_embeddings + c[:, None] * self.resource_embedding


class EdgeHypernet(nn.Module):
    """h(r, c) -> parent logits α, one N x N matrix per branching layer (rows 1..L-1)."""

    onnx_output = "logits"

    def __init__(self, n_tasks: int, num_layers: int, dim: int = 32, hidden: int = 100,
                 identity_prior: float = IDENTITY_PRIOR, learnable_prior: bool = True,
                 prior_c_slope: float = 0.0) -> None:
        super().__init__()
        if not identity_prior >= 0:
            raise ValueError(f"identity_prior must be >= 0, got {identity_prior!r}")
        if not 0 <= prior_c_slope <= 1:
            raise ValueError(f"prior_c_slope must be in [0, 1], got {prior_c_slope!r}")
        if num_layers < 2:
            raise ValueError(f"an edge hypernet needs num_layers >= 2 (one branching row), got {num_layers}")
        self.n_tasks, self.num_layers = n_tasks, num_layers
        self.embedding = PreferenceEmbedding(n_tasks, dim)
        self.trunk = _mlp(dim, hidden, 2)
        self.heads = nn.ModuleList(nn.Linear(hidden, n_tasks * n_tasks) for _ in range(num_layers - 1))
        # Training starts from the anchor net: every node's own stream gets a logit margin
        # larger than the heads' random output, so the initial argmax tree is the identity
        # table (N single-task streams) for every (r, c), and the Gumbel supernet starts
        # near the anchor it was trained as. Kept apart from the heads' biases so that it
        # is an explicit prior (and rescaling a head leaves it untouched). identity_prior = 0
        # turns it off (the paper's plain heads); learnable_prior = False keeps it fixed. It
        # stays a parameter either way (requires_grad off when fixed or off), so every edge
        # hypernet file has the same keys and the ONNX graph is the same.
        self.identity_prior = nn.Parameter(float(identity_prior) * torch.eye(n_tasks).repeat(num_layers - 1, 1, 1),
                                           requires_grad=bool(learnable_prior) and identity_prior > 0)
        # The prior's size as a function of the resource preference: × (1 − prior_c_slope·c).
        # 0 (the default) keeps it constant; 1 holds the anchor's streams at c = 0 and lets the
        # heads alone choose the tree at c = 1 (issue 22). A setting of the run, not a weight:
        # the loader passes it from the run's training settings.
        self.prior_c_slope = float(prior_c_slope)

    def forward(self, r, c) -> torch.Tensor:
        """Logits [L-1, N, N] for r [N] (c scalar), or [B, L-1, N, N] for r [B, N]."""
        r2, c1, batched = _as_batch(r, c, self.n_tasks)
        h = self.trunk(self.embedding(r2, c1))
        n = self.n_tasks
        logits = torch.stack([head(h).reshape(-1, n, n) for head in self.heads], dim=1)
        if self.prior_c_slope:
            scale = (1.0 - self.prior_c_slope * c1).reshape(-1, 1, 1, 1)
            logits = logits + scale * self.identity_prior
        else:
            logits = logits + self.identity_prior
        return logits if batched else logits[0]

    @torch.no_grad()
    def architecture(self, r, c) -> np.ndarray:
        """The maximum-likelihood tree for one (r, c): canonical parent table (L, N) int64.

        Row 0 is the stem (identity); row l is the argmax parent of each node under head
        l-1; dead nodes are -1 (:func:`dymu_rt.core.tree.canonicalize`).
        """
        logits = self(r, c)
        if logits.dim() != 3:
            raise ValueError("architecture() takes one preference (r of shape [N]), not a batch")
        table = np.empty((self.num_layers, self.n_tasks), dtype=np.int64)
        table[0] = np.arange(self.n_tasks)
        table[1:] = logits.argmax(dim=-1).cpu().numpy()
        return canonicalize(table)


class WeightHypernet(nn.Module):
    """h̄(r, c) -> flat BN deltas [D] (Δγ, Δβ per modulated BN; docs/INTERFACES.md)."""

    onnx_output = "deltas"

    def __init__(self, n_tasks: int, delta_size: int, dim: int = 32, hidden: int = 100) -> None:
        super().__init__()
        if delta_size < 1:
            raise ValueError(f"delta_size must be >= 1, got {delta_size}")
        self.n_tasks, self.delta_size = n_tasks, delta_size
        self.embedding = PreferenceEmbedding(n_tasks, dim)
        self.trunk = _mlp(dim, hidden, 3)
        self.out = nn.Linear(hidden, delta_size)
        # Zero output layer: Δγ = Δβ = 0 for every (r, c), so stage 2 starts exactly from
        # the anchor's BN weights (and gradients still reach self.out from step one).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, r, c) -> torch.Tensor:
        """Deltas [D] for r [N] (c scalar), or [B, D] for r [B, N]."""
        r2, c1, batched = _as_batch(r, c, self.n_tasks)
        d = self.out(self.trunk(self.embedding(r2, c1)))
        return d if batched else d[0]


def count_params(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for None): the controller size eval reports."""
    return 0 if module is None else int(sum(p.numel() for p in module.parameters()))


class _OnnxSignature(nn.Module):
    """Exposes a hypernet with the bundle's signature: r [1, N], c [1, 1] -> unbatched output."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(r, c)[0]


@torch.no_grad()
def export_onnx(module: nn.Module, path: str | Path) -> Path:
    """Export an :class:`EdgeHypernet` or :class:`WeightHypernet` to ONNX at ``path`` atomically.

    Inputs ``r`` [1, N] and ``c`` [1, 1] float32; output ``logits`` [L-1, N, N] or
    ``deltas`` [D] (``module.onnx_output``). Opset 17, IR version 10 (what onnxruntime
    1.31 loads). Uses the classic TorchScript exporter (``dynamo=False``): the graph is a
    handful of Gemm/ReLU nodes and it needs no onnxscript.
    """
    import onnx

    name = getattr(module, "onnx_output", None)
    if name is None or not hasattr(module, "n_tasks"):
        raise TypeError(f"export_onnx expects an EdgeHypernet or WeightHypernet, got {type(module).__name__}")
    path = Path(path)
    was_training = module.training
    module.eval()
    n = module.n_tasks
    args = (torch.full((1, n), 1.0 / n), torch.full((1, 1), 0.5))
    try:
        with atomic_path(path) as tmp:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")   # the legacy exporter's deprecation notice
                torch.onnx.export(_OnnxSignature(module), args, str(tmp), input_names=["r", "c"],
                                  output_names=[name], opset_version=ONNX_OPSET,
                                  do_constant_folding=True, dynamo=False)
            model = onnx.load(str(tmp))
            model.ir_version = ONNX_IR_VERSION
            model.producer_name = "dymu-rt"
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
    finally:
        module.train(was_training)
    return path


def controller_sizes(num_tasks: int, num_layers: int, delta_size: int) -> dict[str, int]:
    """Parameter counts of the edge and weight hypernets an anchor of this shape gets, and
    both together (the paper's "Control Params")."""
    edge = count_params(EdgeHypernet(num_tasks, num_layers))
    weight = count_params(WeightHypernet(num_tasks, delta_size))
    return {"edge_hypernet": edge, "weight_hypernet": weight, "total": edge + weight}
