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
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dymu_rt.models.adashare import AdaShareNet, lower_policy
from dymu_rt.train.checkpoint import RunDir
from dymu_rt.train.common import (JsonlLog, anchor_lr, infinite_batches, make_anchor_optimizer, make_split,
                                  make_tasks, seed_everything, set_lr, weighted_task_loss)
from dymu_rt.train.evaluation import evaluate_tree
from dymu_rt.train.static_run import load_stage, save_result, save_stage
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
    w = (L - torch.arange(L, dtype=alpha.dtype)) / L
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
    keep = (open_[:, None] & net.skippable[:, None]).expand_as(v)
    return torch.where(keep, v, torch.ones_like(v))


def sample_policy(net: AdaShareNet, gen: torch.Generator) -> np.ndarray:
    """A 0/1 policy u ~ Bernoulli(α) (non-skippable blocks 1)."""
    with torch.no_grad():
        u = torch.rand(net.select_prob().shape, generator=gen) < net.select_prob()
        u |= ~net.skippable[:, None]
    return u.numpy().astype(np.int64)


# -- stages ---------------------------------------------------------------------------------------

def _losses(tasks, net, batch, v):
    out = net(batch["image"], v)
    return weighted_task_loss(tasks, out, batch)


def train_adashare(run: RunDir, data: str, seed: int, n_train: Optional[int], n_val: Optional[int],
                   progress: bool = True) -> dict:
    """Train (or resume, by stage) an AdaShare run; returns the run config."""
    cfg = run.read_config()
    ac = AdaShareConfig(**cfg["method_config"])
    preset = run.preset()
    tasks = make_tasks(preset)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    log = JsonlLog(run.path / "logs" / "adashare.jsonl")
    seed_everything(seed)
    net = AdaShareNet(preset)
    with make_progress(disable=not progress) as bar:
        if not run.stage_done("warmup"):
            _warmup(net, tasks, preset, ac, train_set, seed, bar, log)
            save_stage(run, "warmup", net, {"steps": ac.warmup_steps})
        else:
            load_stage(run, "warmup", net)
        if not run.stage_done("search"):
            summary = _search(net, tasks, ac, train_set, seed, bar, log)
            save_stage(run, "search", net, summary)
        policy = np.asarray(run.read_config()["stages"]["search"]["policy"], dtype=np.int64)
        if not run.stage_done("final"):
            seed_everything(seed + 1)
            fresh = AdaShareNet(preset)             # retrain from scratch (the paper's last step)
            with torch.no_grad():
                fresh.policy_logits.copy_(load_stage(run, "search", AdaShareNet(preset)).policy_logits)
            v = torch.as_tensor(policy, dtype=torch.float32)
            _fixed_train(fresh, tasks, preset, ac.final_steps, ac.batch, train_set, seed, v, bar, log,
                         "adashare retrain (fixed policy, from scratch)")
            fresh.eval()
            graph = lower_policy(fresh, policy)
            val_set = make_split(preset, data, "val", n=n_val, seed=seed)
            metrics = evaluate_tree(None, tasks, val_set, forward=lambda x: fresh(x, v))
            save_result(run, fresh, graph, {"policy": policy.tolist(), "blocks_executed": int(policy.sum())})
            save_stage(run, "final", fresh, {"steps": ac.final_steps, "val": metrics, "topology": graph.id})
    return run.read_config()


def _fixed_train(net, tasks, preset, steps, batch, train_set, seed, v, bar, log, what):
    """``steps`` of the preset's anchor optimizer (cosine schedule) with select weights ``v``."""
    tcfg = dataclasses.replace(preset.train, anchor_steps=steps)
    opt = make_anchor_optimizer(net.weight_parameters(), tcfg)
    batches = infinite_batches(train_set, batch, seed)
    job = bar.add_task(what, total=steps, info="")
    net.train()
    for step in range(steps):
        set_lr(opt, anchor_lr(tcfg, step))
        loss, per = _losses(tasks, net, next(batches), v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(job, advance=1, info=f"loss={float(loss.detach()):.3f}")
        if (step + 1) % 10 == 0:
            log.write({"stage": what.split(" ")[1], "step": step + 1, "loss": float(loss.detach())})


def _warmup(net, tasks, preset, ac, train_set, seed, bar, log) -> None:
    _fixed_train(net, tasks, preset, ac.warmup_steps, ac.batch, train_set, seed,
                 torch.ones(net.num_blocks, len(tasks)), bar, log, "adashare warm-up (all blocks shared)")


def _halves(train_set):
    n = len(train_set)
    idx = list(range(n))
    return torch.utils.data.Subset(train_set, idx[: n // 2]), torch.utils.data.Subset(train_set, idx[n // 2:])


def _search(net: AdaShareNet, tasks, ac: AdaShareConfig, train_set, seed, bar, log) -> dict:
    w_split, p_split = _halves(train_set)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=ac.weight_lr, momentum=0.9, weight_decay=1e-4)
    p_opt = torch.optim.Adam([net.policy_logits], lr=ac.policy_lr)
    w_batches = infinite_batches(w_split, ac.batch, seed)
    p_batches = infinite_batches(p_split, ac.batch, seed + 7)
    # A curriculum "epoch" is a pass over the policy half, shortened on short CPU schedules
    # so that every block's policy is open for at least the second half of the search.
    epoch_len = max(1, min(len(p_split) // ac.batch, ac.search_steps // (2 * net.num_blocks)))
    B = net.num_blocks
    job = bar.add_task("adashare search (W: SGD | policy: Adam)", total=ac.search_steps, info="")
    net.train()
    for step in range(ac.search_steps):
        epoch = step // epoch_len
        open_ = curriculum_open(epoch, B, net.skippable)
        tau = temperature(step, ac.search_steps, ac.tau0, ac.tau_final)
        # Weights on the first half, policy samples held fixed.
        v = select_weights(net, tau, open_).detach()
        loss_w, _ = _losses(tasks, net, next(w_batches), v)
        w_opt.zero_grad(set_to_none=True)
        loss_w.backward()
        w_opt.step()
        # Policy on the second half (eq. 5).
        v = select_weights(net, tau, open_)
        task_loss, per = _losses(tasks, net, next(p_batches), v)
        alpha = net.select_prob()
        rows = open_ & net.skippable
        sp, sh = sparsity_loss(alpha[rows]), sharing_loss(alpha[rows])
        loss_p = task_loss + ac.lambda_sparsity * sp + ac.lambda_sharing * sh
        p_opt.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        loss_p.backward()
        with torch.no_grad():
            net.policy_logits.grad[~rows] = 0          # closed blocks stay untouched
        p_opt.step()
        info = f"τ={tau:.2f} open={int(open_.sum())}/{B} exec={float(alpha.mean().detach()):.2f}"
        bar.update(job, advance=1, info=info)
        if (step + 1) % 10 == 0:
            log.write({"stage": "search", "step": step + 1, "loss_w": float(loss_w.detach()), "task": float(task_loss.detach()),
                       "sparsity": float(sp.detach()), "sharing": float(sh.detach()), "tau": tau, "open": int(open_.sum()),
                       "exec_prob": float(alpha.mean().detach())})
    # Sample 8 policies from α and keep the best on the held-out (policy) half.
    net.eval()
    gen = torch.Generator().manual_seed(seed + 11)
    sel = torch.utils.data.Subset(p_split, list(range(min(len(p_split), ac.n_select))))
    candidates = []
    for _ in range(ac.n_samples):
        pol = sample_policy(net, gen)
        v = torch.as_tensor(pol, dtype=torch.float32)
        m = evaluate_tree(None, tasks, sel, forward=lambda x, v=v: net(x, v))
        score = sum(t.loss_weight * m[t.name]["loss"] for t in tasks)
        candidates.append((score, pol))
    best = min(range(len(candidates)), key=lambda i: candidates[i][0])
    return {"steps": ac.search_steps, "select_prob": net.select_prob().detach().tolist(),
            "candidates": [{"loss": float(s), "blocks_executed": int(p.sum())} for s, p in candidates],
            "best": best, "policy": candidates[best][1].tolist()}


__all__ = ["AdaShareConfig", "sparsity_loss", "sharing_loss", "curriculum_open", "temperature",
           "select_weights", "sample_policy", "train_adashare"]
