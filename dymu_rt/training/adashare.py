"""AdaShare training (Sun et al., NeurIPS 2020, Sec. 3): warm-up, policy search, retrain.

* **warm-up** (``warmup_steps``): every block shared by every task (hard parameter
  sharing), the preset's anchor optimizer on the whole training split;
* **search** (``search_steps``): the training split is cut in two halves; each step
  updates the weights W on the first half (SGD, momentum 0.9) and then the policy logits
  on the second (Adam) — "alternately on separate training splits". Select weights are
  Gumbel-softmax samples (eq. 2) with τ annealed geometrically from 5 towards 0
  (``tau_final`` at the last step); the policy loss is eq. 5:
  Σ_k λ_k L_k + λ_sp L_sparsity (eq. 3) + λ_sh L_sharing (eq. 4), λ_k = the preset's task
  loss weights. Curriculum: in epoch e (0-based) only the last e + 1 blocks have a
  learnable policy; the others are executed (select = 1). An epoch is a pass over the
  policy half, or search_steps / (2 · blocks) steps if that is shorter, so that on short
  CPU schedules every block is open for at least the second half of the search;
* then ``n_samples`` (8, as the paper) policies u ~ Bernoulli(α) are drawn and the one
  with the lowest weighted loss on the policy half (held out from W's updates) is kept;
* **retrain** (``final_steps``): a fresh network with that fixed policy, trained from
  scratch on the whole training split with the anchor optimizer.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dymu_rt.models.adashare import AdaShareNet, lower_policy
from dymu_rt.run.layout import RunDir
from dymu_rt.training.common import (anchor_lr, make_anchor_optimizer, make_split, seed_everything, set_lr,
                                     weighted_task_loss)
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.device import fp32_outputs
from dymu_rt.training.evaluation import evaluate_tree
from dymu_rt.training.setup import TrainSetup, backward_step
from dymu_rt.training.static_run import StageProgress, load_stage, save_result, save_stage, start_static
from dymu_rt.utils.progress import make_progress


@dataclasses.dataclass(frozen=True)
class AdaShareConfig:
    """AdaShare settings (stored in the run's ``method_config``)."""

    warmup_steps: int
    search_steps: int
    final_steps: int
    batch: int = 16
    weight_lr: float = 0.01          # SGD (momentum 0.9) for W in the search
    policy_lr: float = 0.01          # Adam for the policy logits
    lambda_sparsity: float = 0.02
    lambda_sharing: float = 0.05
    tau0: float = 5.0
    tau_final: float = 0.1
    n_samples: int = 8
    n_select: int = 128              # policy-half scenes that rank the sampled policies


# -- the paper's pieces, small enough to test one by one ---------------------------------------

def sparsity_loss(alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 3: Σ_{l,k} log α_{l,k}, α = probability of executing block l in task k."""
    return torch.log(alpha.clamp_min(1e-12)).sum()


def sharing_loss(alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 4: Σ_{k1,k2} Σ_l (L − l)/L |α_{l,k1} − α_{l,k2}| (l = 0 the bottom block, weight 1)."""
    L = alpha.shape[0]
    w = (L - torch.arange(L, dtype=alpha.dtype, device=alpha.device)) / L
    diff = (alpha[:, :, None] - alpha[:, None, :]).abs()           # [L, K, K], ordered pairs
    return (w[:, None, None] * diff).sum()


def curriculum_open(epoch: int, n_blocks: int, skippable: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Blocks whose policy is learned in ``epoch`` (0-based): the last epoch + 1 of them.

    With ``skippable`` (a bool mask [n_blocks]) the count runs over the skippable blocks
    only: a block without a shortcut (the paper nets' R-ASPP, the last branchable layer)
    has no policy to learn, so it does not use up an epoch of the curriculum.
    """
    open_ = torch.zeros(n_blocks, dtype=torch.bool)
    if skippable is None:
        open_[max(0, n_blocks - (epoch + 1)):] = True
        return open_
    idx = torch.nonzero(torch.as_tensor(skippable, dtype=torch.bool)).flatten()
    if len(idx):
        open_[idx[max(0, len(idx) - (epoch + 1)):]] = True
    return open_


def temperature(step: int, total: int, tau0: float = 5.0, tau_final: float = 0.1) -> float:
    """τ at ``step``: geometric from τ0 to tau_final over the search."""
    return tau0 * (tau_final / tau0) ** (min(step, total) / max(1, total))


def select_weights(net: AdaShareNet, tau: float, open_: torch.Tensor, hard: bool = False) -> torch.Tensor:
    """Gumbel-softmax select weights v [blocks, tasks] (eq. 2); closed or non-skippable
    blocks are executed (1)."""
    v = F.gumbel_softmax(net.policy_logits, tau=tau, hard=hard, dim=-1)[..., 0]
    keep = (open_[:, None] & net.skippable[:, None]).to(v.device).expand_as(v)
    return torch.where(keep, v, torch.ones_like(v))


def sample_policy(net: AdaShareNet, gen: torch.Generator) -> np.ndarray:
    """A 0/1 policy u ~ Bernoulli(α) (non-skippable blocks 1)."""
    with torch.no_grad():
        prob = net.select_prob().float().cpu()          # the CPU generator draws on the CPU
        u = torch.rand(prob.shape, generator=gen) < prob
        u |= ~net.skippable[:, None]
    return u.numpy().astype(np.int64)


# -- stages ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Ctx:
    """What every stage of one ``train_adashare`` call shares."""

    run: RunDir
    setup: TrainSetup
    tasks: list
    preset: object
    ac: AdaShareConfig
    train_set: object
    seed: int
    save_every: int
    bar: object
    log: Optional[JsonlLog]
    on_step: Optional[Callable[[str, int], None]]

    def losses(self, net, batch, v):
        """Σ λ_k L_k of ``net`` under select weights ``v``: the forward autocast, the
        losses in fp32 on fp32 copies of the outputs."""
        with self.setup.dev.autocast():
            out = net(batch["image"], v)
        return weighted_task_loss(self.tasks, fp32_outputs(out), batch)


def train_adashare(run: RunDir, data: str, seed: int, n_train: Optional[int], n_val: Optional[int],
                   progress: bool = True, save_every: int = 100, setup: Optional[TrainSetup] = None,
                   on_step: Optional[Callable[[str, int], None]] = None) -> dict:
    """Train (or resume) an AdaShare run; returns the run config.

    ``setup``: device, precision, channels-last and input workers (default: CPU, fp32).
    Every stage saves its state every ``save_every`` steps and resumes from the last save;
    ``on_step(stage, step)`` is called after every step (tests raise from it).
    """
    setup, ac, preset, tasks, train_set, log = start_static(run, data, seed, n_train, setup, AdaShareConfig, "adashare.jsonl")
    dev, dist = setup.dev, setup.dist
    net = dev.prepare(AdaShareNet(preset))
    with make_progress(disable=not progress) as bar:
        ctx = _Ctx(run, setup, tasks, preset, ac, train_set, seed, save_every, bar, log, on_step)
        if not run.stage_done("warmup"):
            _warmup(ctx, net)
            save_stage(run, "warmup", net, {"steps": ac.warmup_steps}, setup)
        else:
            load_stage(run, "warmup", net)
        if not run.stage_done("search"):
            summary = _search(ctx, net)
            save_stage(run, "search", net, summary or {}, setup)
        policy = np.asarray(run.read_config()["stages"]["search"]["policy"], dtype=np.int64)
        if not run.stage_done("final"):
            seed_everything(seed + 1)
            fresh = AdaShareNet(preset)             # retrain from scratch (the paper's last step)
            with torch.no_grad():
                fresh.policy_logits.copy_(load_stage(run, "search", AdaShareNet(preset)).policy_logits)
            fresh = dev.prepare(fresh)
            v = torch.as_tensor(policy, dtype=torch.float32)
            _fixed_train(ctx, fresh, "final", ac.final_steps, v, "retrain",
                         "adashare retrain (fixed policy, from scratch)")
            fresh.eval()
            graph = lower_policy(fresh, policy)
            metrics = None
            if dist.is_main:
                val_set = make_split(preset, data, "val", n=n_val, seed=seed)
                metrics = evaluate_tree(None, tasks, val_set, forward=lambda x: fresh(x, v), device=dev.device)
                save_result(run, fresh, graph, {"policy": policy.tolist(), "blocks_executed": int(policy.sum())})
            save_stage(run, "final", fresh, {"steps": ac.final_steps, "val": metrics, "topology": graph.id}, setup)
    return run.read_config()


def _fixed_train(ctx: _Ctx, net, stage: str, steps: int, v: torch.Tensor, log_stage: str, what: str) -> None:
    """``steps`` of the preset's anchor optimizer (cosine schedule) with select weights ``v``
    (a CPU tensor: its 0/1 decisions are read without a device sync)."""
    dev = ctx.setup.dev
    tcfg = dataclasses.replace(ctx.preset.train, anchor_steps=steps)
    opt = make_anchor_optimizer(net.weight_parameters(), tcfg)
    scaler = dev.grad_scaler()
    prog = StageProgress(ctx.run, stage, net, {"opt": opt}, scaler, ctx.setup, ctx.save_every, ctx.log,
                         log_stage, ctx.on_step)
    net.train()
    with ctx.setup.batches(ctx.train_set, ctx.ac.batch, ctx.seed, start_step=prog.start) as batches:
        for step in prog.steps(steps, ctx.bar, what):
            set_lr(opt, anchor_lr(tcfg, step))
            loss, per = ctx.losses(prog.model, dev.batch(next(batches)), v)
            backward_step(loss, opt, scaler)
            if (step + 1) % 10 == 0:               # read (a device sync) on logged steps only
                value = prog.mean(loss)
                ctx.bar.update(prog.job, info=f"loss={value:.3f}")
                if ctx.log is not None:
                    ctx.log.write({"stage": log_stage, "step": step + 1, "loss": value})


def _warmup(ctx: _Ctx, net) -> None:
    _fixed_train(ctx, net, "warmup", ctx.ac.warmup_steps, torch.ones(net.num_blocks, len(ctx.tasks)), "warm-up",
                 "adashare warm-up (all blocks shared)")


def _halves(train_set):
    n = len(train_set)
    idx = list(range(n))
    return torch.utils.data.Subset(train_set, idx[: n // 2]), torch.utils.data.Subset(train_set, idx[n // 2:])


def _search(ctx: _Ctx, net: AdaShareNet) -> Optional[dict]:
    ac, dev, tasks = ctx.ac, ctx.setup.dev, ctx.tasks
    w_split, p_split = _halves(ctx.train_set)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=ac.weight_lr, momentum=0.9, weight_decay=1e-4)
    p_opt = torch.optim.Adam([net.policy_logits], lr=ac.policy_lr)
    # One loss scaler for both updates: each backward is scaled, each step unscaled and
    # skipped on inf/NaN gradients, the scale updated after each.
    scaler = dev.grad_scaler()
    # The Gumbel noise of the search starts from its own seed, so that a run resumed at
    # the stage boundary draws the same noise as one that was never stopped.
    torch.manual_seed(ctx.seed + 2)
    prog = StageProgress(ctx.run, "search", net, {"w": w_opt, "policy": p_opt}, scaler, ctx.setup, ctx.save_every,
                         ctx.log, "search", ctx.on_step)
    # A curriculum "epoch" is a pass over the policy half, shortened on short CPU schedules
    # so that every block's policy is open for at least the second half of the search.
    epoch_len = max(1, min(len(p_split) // ac.batch, ac.search_steps // (2 * net.num_blocks)))
    B = net.num_blocks

    def schedule(step: int):
        """(τ, open blocks) at ``step``: both functions of the step, so a resume restores them."""
        return (temperature(step, ac.search_steps, ac.tau0, ac.tau_final),
                curriculum_open(step // epoch_len, B, net.skippable))

    def state_info(step: int) -> dict:
        tau, open_ = schedule(step)
        return {"tau": tau, "curriculum_epoch": step // epoch_len, "open": int(open_.sum())}

    net.train()
    with ctx.setup.batches(w_split, ac.batch, ctx.seed, start_step=prog.start) as w_batches, \
            ctx.setup.batches(p_split, ac.batch, ctx.seed + 7, start_step=prog.start) as p_batches:
        for step in prog.steps(ac.search_steps, ctx.bar, "adashare search (W: SGD | policy: Adam)", state_info):
            tau, open_ = schedule(step)
            rows = open_ & net.skippable                        # CPU: no device sync to index with
            rows_idx = torch.nonzero(rows).flatten().to(dev.device, non_blocking=True)
            closed = (~rows).to(dev.device, non_blocking=True)
            # Weights on the first half, policy samples held fixed (Gumbel noise in fp32).
            v = select_weights(net, tau, open_).detach()
            loss_w, _ = ctx.losses(prog.model, dev.batch(next(w_batches)), v)
            backward_step(loss_w, w_opt, scaler)
            # Policy on the second half (eq. 5); α and the sparsity/sharing terms in fp32.
            # Only the policy logits are differentiated (W's gradients of this loss would be
            # thrown away), through the bare network: under torchrun their gradient is
            # averaged over the ranks here, not by DDP, which would also all-reduce W's.
            v = select_weights(net, tau, open_)
            task_loss, per = ctx.losses(net, dev.batch(next(p_batches)), v)
            alpha = net.select_prob()
            alpha_open = alpha.index_select(0, rows_idx)
            sp, sh = sparsity_loss(alpha_open), sharing_loss(alpha_open)
            loss_p = task_loss + ac.lambda_sparsity * sp + ac.lambda_sharing * sh
            p_opt.zero_grad(set_to_none=True)
            scaler.scale(loss_p).backward(inputs=[net.policy_logits])
            with torch.no_grad():
                grad = net.policy_logits.grad
                if ctx.setup.dist.enabled:
                    grad.copy_(ctx.setup.dist.mean(grad))
                grad.masked_fill_(closed[:, None, None], 0)   # closed blocks stay untouched
            scaler.step(p_opt)
            scaler.update()
            if (step + 1) % 10 == 0:               # read (a device sync) on logged steps only
                exec_prob = float(alpha.mean().detach())
                loss_w_g, task_g = prog.mean(loss_w), prog.mean(task_loss)
                ctx.bar.update(prog.job, info=f"τ={tau:.2f} open={int(open_.sum())}/{B} exec={exec_prob:.2f}")
                if ctx.log is not None:
                    ctx.log.write({"stage": "search", "step": step + 1, "loss_w": loss_w_g, "task": task_g,
                                   "sparsity": float(sp.detach()), "sharing": float(sh.detach()), "tau": tau,
                                   "open": int(open_.sum()), "exec_prob": exec_prob})
    if not ctx.setup.dist.is_main:
        return None                                # rank 0 picks the policy; save_stage waits for it
    # Sample 8 policies from α and keep the best on the held-out (policy) half.
    net.eval()
    gen = torch.Generator().manual_seed(ctx.seed + 11)
    sel = torch.utils.data.Subset(p_split, list(range(min(len(p_split), ac.n_select))))
    candidates = []
    for _ in range(ac.n_samples):
        pol = sample_policy(net, gen)
        v = torch.as_tensor(pol, dtype=torch.float32)
        m = evaluate_tree(None, tasks, sel, forward=lambda x, v=v: net(x, v), device=dev.device)
        score = sum(t.loss_weight * m[t.name]["loss"] for t in tasks)
        candidates.append((score, pol))
    best = min(range(len(candidates)), key=lambda i: candidates[i][0])
    return {"steps": ac.search_steps, "select_prob": net.select_prob().detach().cpu().tolist(),
            "candidates": [{"loss": float(s), "blocks_executed": int(p.sum())} for s, p in candidates],
            "best": best, "policy": candidates[best][1].tolist()}


__all__ = ["AdaShareConfig", "sparsity_loss", "sharing_loss", "curriculum_open", "temperature",
           "select_weights", "sample_policy", "train_adashare"]
