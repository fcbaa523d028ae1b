"""DAG central network training (Choi & Im, CVPR 2023, Sec. 3.2): warm-up, search, fine-tune.

* **warm-up** (``warmup_steps``): A, B, Γ fixed at 0 (σ = 0.5) and frozen; the network
  weights Θ trained on the task loss (eq. 7) with the preset's anchor optimizer;
* **search** (``search_steps``): A, B, Γ (Adam, ``upper_lr``) and Θ trained together on
  L_task + λ_sq L_sq (eq. 8), L_sq = Σ_k max(Σ_{γ∈Γ^k} σ(γ) − κ, 0) (eq. 9, budget κ);
* **flow-based reduction** (Algorithm 1, :func:`flow_reduction`) per task, then the edges
  on no read-in → read-out path are dropped (:func:`prune_to_paths`);
* **fine-tune** (``final_steps``): the masks fixed (no sigmoid, eq. 3-5 with 0/1 weights),
  Θ re-trained from the search's weights.

Algorithm 1 as printed sets N_β = max(N_α + 1, argmax B) and keeps the states
[N_α, N_β): the state with the largest read-out weight would then be cut off. We read
the bound as inclusive, N_β = max(N_α, argmax B) + 1, so that state stays.

Its stop condition (Sec. 3.2): edges go, lowest information flow first, until removing
the next one would break "the reachability of Γ̂ between hidden state v_{N_α} to v_{N_β}"
(DFS). That path runs through the edges Γ, not through the read-in / read-out layers:
checking only read-in source -> read-out sink (as an earlier version here did) lets a
read-in -> state -> read-out shortcut stand for the whole network, and every task
collapsed to 0-2 edges. We check both: v_{N_α} reaches v_{N_β} through Γ̂ (the paper's
condition) and the read-in reaches the read-out (so the reduced network has an input and
an output).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch

from dymu_rt.models.dag import DagNet, DagSpec, default_spec, lower_masks
from dymu_rt.run.layout import RunDir
from dymu_rt.training.common import anchor_lr, make_anchor_optimizer, make_split, set_lr, weighted_task_loss
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.device import fp32_outputs
from dymu_rt.training.evaluation import evaluate_tree
from dymu_rt.training.setup import TrainSetup, backward_step
from dymu_rt.training.static_run import StageProgress, load_stage, save_result, save_stage, start_static
from dymu_rt.utils.progress import make_progress


@dataclasses.dataclass(frozen=True)
class DagConfig:
    """DAG-network settings (stored in the run's ``method_config``)."""

    warmup_steps: int
    search_steps: int
    final_steps: int
    batch: int = 16
    flow: int = 3                    # M
    states: int = 8                  # N (a VGG-16 preset: its 12 layers, set by method_config)
    channels: int = 0                # 0 = from the preset's backbone (its widest stage / 2)
    budget: float = 0.0              # κ; 0 = N (about one kept input per state)
    lambda_squeeze: float = 0.1
    upper_lr: float = 0.05          # Adam for A, B, Γ (short CPU searches: 5x a usual 1e-2)


def dag_spec(preset, dc: DagConfig) -> DagSpec:
    """The central network's shape for ``preset`` (:func:`dymu_rt.models.dag.default_spec`)."""
    return default_spec(preset, dc.flow, dc.states, dc.channels)


# -- the paper's pieces -------------------------------------------------------------------------

def squeeze_loss(gamma: torch.Tensor, budget: float) -> torch.Tensor:
    """Eq. 9: Σ_k max(Σ_{γ ∈ Γ^k} σ(γ) − κ, 0) for Γ [tasks, edges]."""
    return torch.clamp(torch.sigmoid(gamma).sum(dim=1) - budget, min=0).sum()


def reachable(psi: np.ndarray, src: int, dst: int) -> bool:
    """Depth-first search: is ``dst`` reachable from ``src`` along edges psi[i, j] > 0?"""
    seen, stack = {src}, [src]
    while stack:
        i = stack.pop()
        if i == dst:
            return True
        for j in np.nonzero(psi[i] > 0)[0]:
            if int(j) not in seen:
                seen.add(int(j))
                stack.append(int(j))
    return False


def flow_scores(psi: np.ndarray) -> np.ndarray:
    """Algorithm 1 line 13: the information flow S[i, j] of every edge of Ψ.

    S_ij = ψ_ij · (mean inflow of i / total outflow of i) / (mean outflow of j / total
    inflow of j). The source has no inflow and the sink no outflow: their terms are 1. An
    edge out of a state nothing reaches, or into a state that leads nowhere, carries no
    flow: it gets the smallest positive score, so it goes first.
    """
    n = psi.shape[0]
    S = np.zeros_like(psi, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    for i in range(n):
        for j in range(n):
            w = psi[i, j]
            if w <= 0:
                continue
            ins, outs_i = psi[:, i], psi[i, :]
            outs_j, ins_j = psi[j, :], psi[:, j]
            mean_in_i = 1.0 if i == 0 else (ins.sum() / max(1, np.count_nonzero(ins)))
            mean_out_j = 1.0 if j == n - 1 else (outs_j.sum() / max(1, np.count_nonzero(outs_j)))
            if mean_in_i <= 0 or mean_out_j <= 0:
                S[i, j] = tiny
                continue
            S[i, j] = w * (mean_in_i / outs_i.sum()) / (mean_out_j / ins_j.sum())
    return S


def flow_reduction(G: np.ndarray, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Algorithm 1 for one task: Γ [N, N] (edge i -> j weights, 0 = no edge), A, B [N]
    (read-in / read-out weights, after the sigmoid) -> 0/1 (Γ̂, Â, B̂).

    Edges are removed lowest flow first while v_{N_α} still reaches v_{N_β} through the
    kept edges Γ̂ and the read-out stays reachable from the read-in (both checked by DFS);
    the edge whose removal would break either stops it (see the module docstring).
    """
    G, A, B = np.asarray(G, np.float64), np.asarray(A, np.float64), np.asarray(B, np.float64)
    N = len(A)
    na = int(np.argmax(A))
    nb = max(na, int(np.argmax(B))) + 1              # exclusive bound (see the module docstring)
    G = G.copy()
    G[:na, :] = 0
    G[:, nb:] = 0
    psi = np.zeros((N + 2, N + 2))
    psi[1:N + 1, 1:N + 1] = G
    psi[0, na + 1:nb + 1] = A[na:nb]
    psi[na + 1:nb + 1, N + 1] = B[na:nb]
    top = nb - 1                                     # the last kept state: v_{N_β} (0-based)

    def chain(p: np.ndarray) -> bool:
        g = np.zeros_like(p)
        g[1:N + 1, 1:N + 1] = p[1:N + 1, 1:N + 1]          # Γ̂ only: no read-in / read-out shortcut
        return reachable(g, na + 1, top + 1)

    # A Γ path from v_{N_α} to v_{N_β} (always there under the flow restriction while every
    # σ(γ) > 0; if not, e.g. hand-made masks, only read-in -> read-out is kept connected),
    # entered from the read-in and left through the read-out.
    need_chain = chain(psi)

    def connected(p: np.ndarray) -> bool:
        if not need_chain:
            return reachable(p, 0, N + 1)
        return chain(p) and reachable(p, 0, na + 1) and reachable(p, top + 1, N + 1)

    best = psi.copy()
    while True:
        S = flow_scores(psi)
        if not (S > 0).any():
            break
        i, j = np.unravel_index(np.argmin(np.where(S > 0, S, np.inf)), S.shape)
        psi[i, j] = 0
        if connected(psi):
            best = psi.copy()
        else:
            break
    return _discrete(best, N)


def _discrete(best: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    D = (best > 0).astype(np.int64)
    return D[1:N + 1, 1:N + 1], D[0, 1:N + 1], D[1:N + 1, N + 1]


def prune_to_paths(G: np.ndarray, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep only the 0/1 edges on some read-in -> read-out path (nothing else can matter)."""
    N = len(A)
    psi = np.zeros((N + 2, N + 2), np.int64)
    psi[1:N + 1, 1:N + 1], psi[0, 1:N + 1], psi[1:N + 1, N + 1] = G, A, B
    fwd = {i for i in range(N + 2) if reachable(psi, 0, i)}
    bwd = {i for i in range(N + 2) if reachable(psi, i, N + 1)}
    keep = np.zeros_like(psi)
    for i, j in zip(*np.nonzero(psi)):
        if i in fwd and j in bwd:
            keep[i, j] = 1
    return keep[1:N + 1, 1:N + 1], keep[0, 1:N + 1], keep[1:N + 1, N + 1]


def reduce_network(net: DagNet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks A [K, N], B [K, N], G [K, E] of the reduced, pruned per-task sub-networks."""
    sa, sb, sg = (t.detach().cpu().numpy() for t in net.soft_weights())
    K, N = sa.shape
    A, B, G = np.zeros_like(sa), np.zeros_like(sb), np.zeros_like(sg)
    for k in range(K):
        gm = np.zeros((N, N))
        for e, (i, j) in enumerate(net.edge_list):
            gm[i - 1, j - 1] = sg[k, e]
        g, a, b = prune_to_paths(*flow_reduction(gm, sa[k], sb[k]))
        A[k], B[k] = a, b
        for e, (i, j) in enumerate(net.edge_list):
            G[k, e] = g[i - 1, j - 1]
    return A, B, G


# -- stages ---------------------------------------------------------------------------------------

def train_dag(run: RunDir, data: str, seed: int, n_train: Optional[int], n_val: Optional[int],
              progress: bool = True, save_every: int = 100, setup: Optional[TrainSetup] = None,
              on_step: Optional[Callable[[str, int], None]] = None) -> dict:
    """Train (or resume) a DAG run; returns the run config.

    ``setup``: device, precision, channels-last and input workers (default: CPU, fp32).
    Every stage saves its state every ``save_every`` steps and resumes from the last save;
    ``on_step(stage, step)`` is called after every step (tests raise from it).
    """
    setup, dc, preset, tasks, train_set, log = start_static(run, data, seed, n_train, setup, DagConfig, "dag.jsonl")
    dev, dist = setup.dev, setup.dist
    net = dev.prepare(DagNet(preset, dag_spec(preset, dc)))
    budget = dc.budget or float(dc.states)
    ctx = _Ctx(run, setup, tasks, preset, dc.batch, train_set, save_every, log, on_step)
    with make_progress(disable=not progress) as bar:
        if not run.stage_done("warmup"):
            for p in net.upper_parameters():
                p.requires_grad_(False)
            _train(ctx, net, dc.warmup_steps, seed, bar, "warmup", "dag warm-up (A, B, Γ frozen at σ = 0.5)")
            save_stage(run, "warmup", net, {"steps": dc.warmup_steps}, setup)
        else:
            load_stage(run, "warmup", net)
        if not run.stage_done("search"):
            for p in net.upper_parameters():
                p.requires_grad_(True)
            _train(ctx, net, dc.search_steps, seed + 3, bar, "search",
                   f"dag search (squeeze loss, κ = {budget:g})", upper=(dc.upper_lr, dc.lambda_squeeze, budget))
            A, B, G = reduce_network(net)
            save_stage(run, "search", net, {"steps": dc.search_steps, "masks": {
                "A": A.tolist(), "B": B.tolist(), "G": G.tolist()}, "edges": [list(e) for e in net.edge_list],
                "soft": {k: v.detach().cpu().tolist() for k, v in zip("ABG", net.soft_weights())}}, setup)
        else:
            load_stage(run, "search", net)
        if not run.stage_done("final"):
            load_stage(run, "search", net)
            m = run.read_config()["stages"]["search"]["masks"]
            # CPU masks: the forward reads their zeros without a device sync.
            masks = tuple(torch.tensor(m[k], dtype=torch.float32) for k in "ABG")
            for p in net.upper_parameters():
                p.requires_grad_(False)
            _train(ctx, net, dc.final_steps, seed + 5, bar, "final", "dag fine-tune (reduced sub-networks)",
                   masks=masks)
            net.eval()
            graph = lower_masks(net, *masks)
            metrics = None
            if dist.is_main:
                val_set = make_split(preset, data, "val", n=n_val, seed=seed)
                metrics = evaluate_tree(None, tasks, val_set, forward=lambda x: net(x, masks), device=dev.device)
                save_result(run, net, graph, {"masks": m, "edges_kept": int(masks[2].sum()),
                                              "edges_total": int(masks[2].numel())})
            save_stage(run, "final", net, {"steps": dc.final_steps, "val": metrics, "topology": graph.id}, setup)
    return run.read_config()


@dataclasses.dataclass
class _Ctx:
    """What every stage of one ``train_dag`` call shares."""

    run: RunDir
    setup: TrainSetup
    tasks: list
    preset: object
    batch: int
    train_set: object
    save_every: int
    log: Optional[JsonlLog]
    on_step: Optional[Callable[[str, int], None]]


def _train(ctx: _Ctx, net: DagNet, steps: int, seed: int, bar, stage: str, what: str,
           upper=None, masks=None) -> None:
    """``steps`` of Θ's optimizer (and, with ``upper`` = (lr, λ_sq, κ), Adam on A, B, Γ on
    L_task + λ_sq L_sq), resumable every ``ctx.save_every`` steps. The forward is autocast;
    σ(A), σ(B), σ(Γ) are taken outside it (fp32) and the losses on fp32 outputs."""
    dev = ctx.setup.dev
    tcfg = dataclasses.replace(ctx.preset.train, anchor_steps=steps)
    opt = make_anchor_optimizer(net.weight_parameters(), tcfg)
    u_opt = torch.optim.Adam(net.upper_parameters(), lr=upper[0]) if upper else None
    opts = {"opt": opt, **({"upper": u_opt} if u_opt else {})}
    scaler = dev.grad_scaler()
    prog = StageProgress(ctx.run, stage, net, opts, scaler, ctx.setup, ctx.save_every, ctx.log, stage, ctx.on_step)
    net.train()
    with ctx.setup.batches(ctx.train_set, ctx.batch, seed, start_step=prog.start) as batches:
        for step in prog.steps(steps, bar, what):
            set_lr(opt, anchor_lr(tcfg, step))
            b = dev.batch(next(batches))
            weights = net.soft_weights() if masks is None else masks
            with dev.autocast():
                out = prog.model(b["image"], weights)
            loss, per = weighted_task_loss(ctx.tasks, fp32_outputs(out), b)
            sq = None
            if upper:
                sq = squeeze_loss(net.gamma.float(), upper[2])
                loss = loss + upper[1] * sq
            backward_step(loss, list(opts.values()), scaler)
            if (step + 1) % 10 == 0:               # read (a device sync) on logged steps only
                value = prog.mean(loss)
                info = f"loss={value:.3f}"
                if upper:
                    info += f" Σσ(Γ)/task={float(torch.sigmoid(net.gamma.detach()).sum(1).mean()):.1f}"
                bar.update(prog.job, info=info)
                if ctx.log is not None:
                    ctx.log.write({"stage": stage, "step": step + 1, "loss": value,
                                   "squeeze": 0.0 if sq is None else float(sq.detach())})
