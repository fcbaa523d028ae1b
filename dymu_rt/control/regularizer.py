"""The branching regularizer Ω of stage 1 (paper §3.3): Ω = c·λ_A·L_active + λ_I·L_inactive.

Notation (docs/INTERFACES.md parent-table convention): the tree has L layers, row 0 is the
stem; ``nu`` is a Tensor[L-1, N, N] of row-stochastic Gumbel-softmax samples and
``nu[l-1][j]`` = ν_j^l is the parent distribution of node (l, j) over the nodes of layer
l-1, for l = 1..L-1.

* P_use(l, i), the probability that node (l, i) is on some task's path, by dynamic
  programming from the top (every top node feeds its task head):
  P_use(L-1, i) = 1,  P_use(l-1, i) = 1 − Π_k (1 − P_use(l, k) · ν_k^l(i)).
  This treats the events "node (l, k) is used and picks i" as independent across k. That
  is exact one layer below the top (each top node is always used and picks its parent
  independently) and whenever the usage of layer l is deterministic (one-hot ν above);
  lower down, usages of sibling nodes are correlated through their shared ancestors and the
  DP is the paper's approximation (tests/control/test_control_regularizer.py shows both).
* Active tasks A = {i : r_i >= τ} (τ = 0.6/N by default), inactive I = the rest.
* L_active = Σ_l Σ_{i≠j∈A} w_l · A(i,j) · P_use(l,i) P_use(l,j) · ||ν_i^l − ν_j^l||²:
  pulls the parent distributions of important, related tasks together (sharing), more so
  in lower layers, weighted by how likely both nodes are to run. Ordered pairs, as written
  in the paper (each unordered pair counts twice when A is symmetric).
  Layer weight w_l: the paper writes (L−l)/L with its layers 0..L — layer 0 (the stem) reads
  the image, ν^l exists for l = 1..L and the top layer is L (P_use(L, ·) = 1), so the top
  layer's choice gets weight 0 and the lowest choice (L−1)/L. Here the tree has L rows
  (0..L−1) and the paper's L is our top row L−1 = ``nu.shape[0]``: with B = L−1 branching
  layers, w_l = (B − l)/B for l = 1..B (top 0, bottom (B−1)/B). With B = 1 the active loss is
  therefore 0 (the only choice is the top one, which the paper does not pull together).
* L_inactive = Σ_l Σ_{j∈I} min_{i∈A} ||ν_i^l − ν_j^l||²: lets unimportant tasks branch off
  the closest important task instead of keeping their own streams.

The c factor makes the sharing pressure — and so the saving in compute — follow the
resource preference. If A is empty (only possible with τ > 1/N, since max_i r_i >= 1/N),
both losses are 0: there is no important task to share with or attach to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch


TensorLike = Union[torch.Tensor, Sequence[torch.Tensor]]


@dataclass(frozen=True)
class RegularizerConfig:
    """Weights, threshold and ablation switches of Ω.

    ``tau`` None means 0.6/N (the paper's value across datasets). Paper weights: λ_A = 1,
    λ_I = 0.1 (CIFAR-100: 0.2 / 0.02). Ablations (paper Table 5): ``inactive_loss=False``
    drops L_inactive; ``layer_weighting=False`` uses weight 1 instead of (L−l)/L;
    ``use_affinity=False`` uses A(i, j) = 1; ``dichotomy=False`` treats every task as active.
    ``inactive_detach=True`` keeps the value of L_inactive but treats the active tasks' ν as
    a fixed target, so its gradient moves only the inactive nodes (they branch off the
    closest active task; the active task's own parents are left to the task loss and the
    c-weighted L_active). The literal, symmetric form (False, the default) also pulls the
    active node towards the inactive ones; with Dir(0.2) preferences ~98% of steps have an
    inactive task, and on the synth-nyu CPU preset this collapsed every (r, c) onto one
    shared stream, independent of c and mostly of r.
    """

    lambda_active: float = 1.0
    lambda_inactive: float = 0.1
    tau: Optional[float] = None
    inactive_loss: bool = True
    layer_weighting: bool = True
    use_affinity: bool = True
    dichotomy: bool = True
    inactive_detach: bool = False

    def __post_init__(self) -> None:
        from dymu_rt.errors import ValidationError

        for name in ("lambda_active", "lambda_inactive"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValidationError(f"regularizer {name} {v!r} is not valid; expected a number >= 0")
        if self.tau is not None and (isinstance(self.tau, bool) or not isinstance(self.tau, (int, float))
                                     or not 0 < self.tau <= 1):
            raise ValidationError(f"regularizer tau {self.tau!r} is not valid; expected 0 < tau <= 1")
        for name in ("inactive_loss", "layer_weighting", "use_affinity", "dichotomy", "inactive_detach"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(f"regularizer switch {name} must be true or false, "
                                      f"got {getattr(self, name)!r}")

    def threshold(self, n_tasks: int) -> float:
        """τ for N tasks."""
        return 0.6 / n_tasks if self.tau is None else float(self.tau)


def _stack_nu(nu: TensorLike) -> torch.Tensor:
    t = torch.stack(list(nu)) if not torch.is_tensor(nu) else nu
    if t.dim() != 3 or t.shape[1] != t.shape[2]:
        raise ValueError(f"nu must have shape [L-1, N, N], got {list(t.shape)}")
    return t


def p_use(nu: TensorLike) -> torch.Tensor:
    """P_use as a Tensor[L, N] (row l = layer l), differentiable in ``nu`` (paper, Ω's P(l,i,j))."""
    nu = _stack_nu(nu)
    n_branch, n, _ = nu.shape
    rows = [torch.ones(n, dtype=nu.dtype, device=nu.device)]            # layer L-1
    for l in range(n_branch, 0, -1):                                     # heads L-1 .. 1
        above = rows[-1]                                                 # P_use(l, k)
        # term[k, i] = P_use(l, k) · ν_k^l(i): node (l, k) runs and reads (l-1, i).
        term = above[:, None] * nu[l - 1]
        rows.append(1.0 - torch.prod(1.0 - term, dim=0))
    return torch.stack(rows[::-1])


def active_mask(r: torch.Tensor, config: RegularizerConfig) -> torch.Tensor:
    """Bool [N]: True for active tasks (r_i >= τ; every task when the dichotomy is off)."""
    r = torch.as_tensor(r).reshape(-1)
    if not config.dichotomy:
        return torch.ones_like(r, dtype=torch.bool)
    return r >= config.threshold(r.numel())


def _pair_distances(nu: torch.Tensor) -> torch.Tensor:
    """d[l-1, i, j] = ||ν_i^l − ν_j^l||² (squared Euclidean between parent distributions)."""
    diff = nu[:, :, None, :] - nu[:, None, :, :]
    return (diff * diff).sum(-1)


def _pair_distances_to(nu: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d[l-1, j, i] = ||ν_j^l − target_i^l||² (gradient only through ``nu``)."""
    diff = nu[:, :, None, :] - target[:, None, :, :]
    return (diff * diff).sum(-1)


def branching_regularizer(nu: TensorLike, r, c, affinity: Optional[torch.Tensor] = None,
                          config: Optional[RegularizerConfig] = None) -> tuple[torch.Tensor, dict]:
    """Ω = c·λ_A·L_active + λ_I·L_inactive for one preference; returns (Ω, terms).

    ``nu`` [L-1, N, N] (or a list of L-1 [N, N]), ``r`` [N], ``c`` scalar, ``affinity``
    [N, N] (ignored / may be None when ``config.use_affinity`` is False). ``terms`` holds
    the scalar tensors ``omega``, ``l_active``, ``l_inactive`` and the float ``n_active``.
    """
    config = config or RegularizerConfig()
    nu = _stack_nu(nu)
    n_branch, n, _ = nu.shape
    L = n_branch + 1
    r = torch.as_tensor(r, dtype=nu.dtype, device=nu.device).reshape(-1)
    c = torch.as_tensor(c, dtype=nu.dtype, device=nu.device).reshape(())
    if r.numel() != n:
        raise ValueError(f"r has {r.numel()} entries, nu has N = {n} streams")
    if config.use_affinity:
        if affinity is None:
            raise ValueError("branching regularizer: affinity is required when use_affinity=True")
        aff = torch.as_tensor(affinity, dtype=nu.dtype, device=nu.device)
        if aff.shape != (n, n):
            raise ValueError(f"affinity must have shape [{n}, {n}], got {list(aff.shape)}")
    else:
        aff = torch.ones(n, n, dtype=nu.dtype, device=nu.device)

    act = active_mask(r, config).to(nu.device)
    dist = _pair_distances(nu)                                          # [L-1, N, N]
    use = p_use(nu)[1:]                                                  # P_use(l, ·), l = 1..L-1
    # nu[l-1] = ν^l for l = 1..B (B = L-1 = n_branch branching layers; row 0 is the stem).
    # The paper's top layer index is B, so w_l = (B - l)/B: top layer 0, lowest (B-1)/B.
    layers = torch.arange(1, n_branch + 1, dtype=nu.dtype, device=nu.device)
    weight = (n_branch - layers) / n_branch if config.layer_weighting else torch.ones_like(layers)

    pair = act[:, None] & act[None, :] & ~torch.eye(n, dtype=torch.bool, device=nu.device)
    both_used = use[:, :, None] * use[:, None, :]                        # P(l, i, j)
    per_pair = weight[:, None, None] * aff[None] * both_used * dist
    l_active = (per_pair * pair[None].to(nu.dtype)).sum()

    inact = ~act
    if config.inactive_loss and bool(act.any()) and bool(inact.any()):
        # For each layer and inactive j: distance to the closest active i.
        d_in = _pair_distances_to(nu, nu.detach()) if config.inactive_detach else dist
        to_active = d_in[:, :, act]                                      # [L-1, N(j), |A|]
        l_inactive = to_active.min(dim=-1).values[:, inact].sum()
    else:
        l_inactive = nu.sum() * 0.0        # keeps a graph-connected zero for logging / backward

    omega = c * config.lambda_active * l_active + config.lambda_inactive * l_inactive
    terms = {"omega": omega.detach(), "l_active": l_active.detach(), "l_inactive": l_inactive.detach(),
             "n_active": float(act.sum())}
    return omega, terms
