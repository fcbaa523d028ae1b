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
* L_active = Σ_l Σ_{i≠j∈A} w_l · A(i,j) · P(l,i,j) · ||ν_i^l − ν_j^l||²:
  pulls the parent distributions of important, related tasks together (sharing), more so
  in lower layers, weighted by how likely both nodes are to run. Ordered pairs, as written
  in the paper (each unordered pair counts twice when A is symmetric). Which layer weight
  and which P_use go with which choice depends on how Eq. 3's indices are read
  (``active_reading``); with B = L−1 branching choices, nu[p] = the choice of child row
  p+1 among the nodes of parent row p (p = 0..B−1):
  - ``"printed"`` (default, the paper as printed): Eq. 1 writes the choice of the nodes of
    layer l+1 among layer l as α^l / ν^l (0 <= l < L), and Eq. 3 sums l = 1..L with weight
    (L−l)/L and P(l,i,j) = P_use(l,i)·P_use(l,j) — the usage of the *parent* row l. With the
    paper's L = our B: nu[p] weighs (B−p)/B for p >= 1 and 0 for p = 0 (the lowest choice,
    which the sum does not reach), the top choice 1/B; P from P_use of row p.
  - ``"child"`` (the reading dymu-rt used before issue 22): the choice made by child row
    l = p+1 weighs (B−l)/B with P_use of the choosing (child) row l: the top choice 0, the
    lowest (B−1)/B.
  With B = 1 both give an active loss of 0 (the only weight is 0).
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

from dymu_rt.core.errors import ValidationError


ACTIVE_READINGS = ("printed", "child")

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
    ``active_reading`` "printed" (Eq. 3 as printed: parent-row P_use, the lowest choice
    weighs 0) or "child" (the earlier reading: choosing-row P_use, the top choice weighs 0);
    see the module doc.
    """

    lambda_active: float = 1.0
    lambda_inactive: float = 0.1
    tau: Optional[float] = None
    inactive_loss: bool = True
    layer_weighting: bool = True
    use_affinity: bool = True
    dichotomy: bool = True
    inactive_detach: bool = False
    active_reading: str = "printed"

    def __post_init__(self) -> None:
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
        if self.active_reading not in ACTIVE_READINGS:
            raise ValidationError(f"regularizer active_reading {self.active_reading!r} is not valid; "
                                  f"expected one of {', '.join(ACTIVE_READINGS)}")

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
    rows = p_use(nu)                                                     # P_use(row, ·), rows 0..B
    choice = torch.arange(n_branch, dtype=nu.dtype, device=nu.device)   # p: nu[p] picks among row p
    if config.active_reading == "printed":
        # Eq. 3 as printed: ν^p (choice among parent row p) with weight (B − p)/B summed over
        # p = 1..B (p = 0 is outside the sum: weight 0), P(p,i,j) from parent row p.
        use = rows[:-1]
        weight = torch.where(choice >= 1, (n_branch - choice) / n_branch, torch.zeros_like(choice))
        mask = (choice >= 1).to(nu.dtype)
    else:
        # The choosing (child) row l = p + 1: weight (B − l)/B, P_use of row l.
        use = rows[1:]
        weight = (n_branch - (choice + 1)) / n_branch
        mask = torch.ones_like(choice)
    if not config.layer_weighting:
        weight = mask     # weight 1 on every choice the reading's sum covers
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
