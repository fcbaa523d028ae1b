"""Stage "anchor": train each stream of the anchor net on its own task.

On the identity tree, head j reads only stream j, so the sum of the task losses trains
the N streams independently (the paper's anchor initialization) in one pass. The stage
is resumable: model, optimizer and RNG state are saved atomically every ``save_every``
steps, and a killed run continues from the last save.

Where the streams start (``anchor_init``, issue 22): the paper initializes every stream
from the same ImageNet weights, so the streams' channels stay aligned and a cross-task edge
costs little. "pretrained:FILE" does that (dymu_rt.models.pretrained); "shared" first trains
a shared-encoder multi-task net (stream 0 on the shared tree, every head reading it: PHN's
shared encoder) for ``anchor_pretrain_steps`` (0: two thirds of ``anchor_steps``) — its own resumable sub-stage
"anchor-pretrain", saved as anchor_pretrain.safetensors — and copies that one backbone into
every stream (heads and stem kept) before the single-task fine-tune; "independent" starts
each stream at random.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from dymu_rt.run.layout import RunDir, load_module, optimizer_tensors, save_module
from dymu_rt.models.pretrained import load_pretrained_backbone
from dymu_rt.training.common import (anchor_lr, check_positive, cosine_lr, make_anchor_optimizer, make_split,
                                     make_tasks, pretrain_steps, restore_rng, rng_state, seed_everything, set_lr,
                                     validate_train_config, weighted_task_loss)
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.device import fp32_outputs
from dymu_rt.training.distributed import sync_batchnorm, unsync_batchnorm
from dymu_rt.training.evaluation import evaluate_tree, trivial_baselines
from dymu_rt.training.phn import shared_tree
from dymu_rt.training.setup import TrainSetup, backward_step, restore_scaler, scaler_meta
from dymu_rt.utils.progress import make_progress

PRETRAIN = "anchor-pretrain"


def copy_stream_to_all(anchor, source: int = 0) -> None:
    """Every stream's nodes := stream ``source``'s (parameters and BN statistics)."""
    state = anchor.streams[source].state_dict()
    for j in range(anchor.num_tasks):
        if j != source:
            anchor.streams[j].load_state_dict(state)


def _shared_tree(anchor):
    return shared_tree(anchor.num_layers, anchor.num_tasks), [0] * anchor.num_tasks


def _loop(run: RunDir, stage: str, anchor, total: int, lr_at: Callable[[int], float], setup: TrainSetup,
          data: str, seed: int, save_every: int, n_train, progress: bool, description: str,
          tree=None, stop_after: Optional[int] = None, on_step=None, extra_loss=None) -> bool:
    """The resumable training loop of ``stage`` (anchor or its shared pre-training); False
    when it stopped early (``stop_after``) without finishing. ``extra_loss()`` (optional) is
    added to the task loss at every step (the L2-SP proximity term)."""
    dev, dist = setup.dev, setup.dist
    preset = run.preset()
    cfg = preset.train
    tasks = make_tasks(preset)
    opt = make_anchor_optimizer(anchor.parameters(), cfg)
    scaler = dev.grad_scaler()
    start = 0
    state = run.load_state(stage)
    log = JsonlLog(run.path / "logs" / f"{stage}.jsonl") if dist.is_main else None
    if state is not None:
        tensors, meta = state
        run.restore_state(stage, anchor, opt, tensors, meta)
        restore_rng(tensors, dev.device)
        restore_scaler(scaler, meta.get("scaler"))
        start = int(meta["step"])
        if log is not None:
            log.truncate_after(start)
    # BN in training mode is the one place where ranks would differ from one big batch.
    synced = sync_batchnorm(anchor, dist) if setup.sync_bn else []
    # The shared pre-training runs stream 0 and every head only: the other streams get no gradient.
    model = dist.wrap(anchor, dev.device, find_unused=tree is not None)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    anchor.train()
    parents, heads = tree if tree is not None else (None, None)

    def save(step: int) -> None:
        if not dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in anchor.state_dict().items()}
        opt_t, opt_meta = optimizer_tensors(opt)
        tensors.update(opt_t)
        tensors.update(rng_state(dev.device))
        run.save_state(stage, tensors, {"step": step, "optimizer": opt_meta, "scaler": scaler_meta(scaler)})

    with setup.batches(train_set, cfg.anchor_batch, seed, start_step=start) as batches, \
            make_progress(disable=not (progress and dist.is_main)) as bar:
        job = bar.add_task(description, total=total, completed=start, info="")
        step = start
        while step < total:
            if stop_after is not None and step >= stop_after:
                save(step)
                dist.barrier()
                return False
            batch = dev.batch(next(batches))
            set_lr(opt, lr_at(step))
            with dev.autocast():
                out = model(batch["image"]) if parents is None else model(batch["image"], parents,
                                                                           head_streams=heads)
            loss, per = weighted_task_loss(tasks, fp32_outputs(out), batch)
            if extra_loss is not None:
                loss = loss + extra_loss()
            backward_step(loss, opt, scaler)
            step += 1
            if step % 10 == 0 or step == total:
                # The loss of the global batch (mean over ranks), not rank 0's slice.
                loss_g, per_g = dist.mean(loss.detach()), dist.mean(per)
                info = {t.name: float(v) for t, v in zip(tasks, per_g)}
                if log is not None:
                    log.write({"step": step, "loss": float(loss_g), **info})
                bar.update(job, info=" ".join(f"{k}={v:.3f}" for k, v in info.items()))
            bar.update(job, advance=1)
            if step % save_every == 0 and step < total:
                save(step)
            if on_step is not None:
                on_step(step)
    unsync_batchnorm(synced)
    return True


def _pretrain_shared(run: RunDir, data: str, seed: int, save_every: int, n_train, progress: bool,
                     setup: TrainSetup, stop_after: Optional[int], on_step) -> Optional[object]:
    """The shared-encoder pre-training (resumable); its net, or None if stopped early."""
    dev, dist = setup.dev, setup.dist
    preset = run.preset()
    cfg = preset.train
    if run.stage_done(PRETRAIN):
        net = preset.build()
        load_module(net, run.module_path("anchor_pretrain"), "shared pre-training checkpoint")
        return dev.prepare(net)
    seed_everything(seed + 7919)
    net = dev.prepare(preset.build())
    total = pretrain_steps(cfg)
    done = _loop(run, PRETRAIN, net, total,
                 lambda step: cosine_lr(cfg.anchor_lr, step, total, min(50, total // 10)), setup, data, seed,
                 save_every, n_train, progress, "anchor pre-training (shared encoder)", tree=_shared_tree(net),
                 stop_after=stop_after, on_step=on_step)
    if not done:
        return None
    if dist.is_main:
        net.eval()
        save_module(net, run.module_path("anchor_pretrain"))
        run.mark_done(PRETRAIN, {"step": total, "tree": "shared encoder (stream 0, every head)"})
        run.clear_state(PRETRAIN)
    dist.barrier()
    return net


def initialize_streams(run: RunDir, anchor, data: str, seed: int, save_every: int, n_train, progress: bool,
                       setup: TrainSetup, stop_after=None, on_step=None) -> bool:
    """Apply the run's ``anchor_init`` to a fresh ``anchor``; False if the pre-training stopped early."""
    init = run.preset().train.anchor_init
    if init == "independent":
        return True
    if init.startswith("pretrained:"):
        load_pretrained_backbone(anchor, init[len("pretrained:"):])
        return True
    net = _pretrain_shared(run, data, seed, save_every, n_train, progress, setup, stop_after, on_step)
    if net is None:
        return False
    anchor.load_state_dict(net.state_dict())
    copy_stream_to_all(anchor, 0)
    return True


def l2sp_term(run: RunDir, anchor, data: str, seed: int, save_every: int, n_train, setup: TrainSetup,
              used=None):
    """The L2-SP proximity term of the anchor fine-tune (``anchor_l2sp`` > 0 after a shared or
    pretrained init): a callable giving anchor_l2sp/2 * sum over streams of ||theta_j - theta_0||^2,
    theta_0 the stream weights the init gave (rebuilt from the saved pre-training or the weight
    file, so a resumed run gets the same reference); None when off. ``used`` (a layers x tasks
    mask, the retrain of a tree): only those nodes are pulled, so nodes outside the tree stay
    as they are; all True is the anchor's own term."""
    cfg = run.preset().train
    if cfg.anchor_l2sp <= 0 or cfg.anchor_init == "independent":
        return None
    ref = setup.dev.prepare(run.preset().build())
    if not initialize_streams(run, ref, data, seed, save_every, n_train, False, setup):
        raise RuntimeError("the shared pre-training must be finished before the anchor fine-tune")
    ref_nodes = [[p.detach().clone() for p in node.parameters()] for node in ref.streams[0]]
    ref0 = [r for node in ref_nodes for r in node]      # the stream's parameters, in its order
    del ref
    alpha = float(cfg.anchor_l2sp)

    def term():
        total = 0.0
        for stream in anchor.streams:
            total = total + sum(((p - r) ** 2).sum() for p, r in zip(stream.parameters(), ref0))
        return 0.5 * alpha * total

    if used is None or bool(np.all(used)):
        return term

    def tree_term():
        total = 0.0
        for l, j in zip(*np.nonzero(used)):
            total = total + sum(((p - r) ** 2).sum()
                                for p, r in zip(anchor.streams[j][l].parameters(), ref_nodes[l]))
        return 0.5 * alpha * total

    return tree_term


def train_anchor(run: RunDir, data: str = "synth", seed: int = 0, save_every: int = 100,
                 n_train: Optional[int] = None, n_val: Optional[int] = None, progress: bool = True,
                 stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None,
                 setup: Optional[TrainSetup] = None) -> dict:
    """Train (or resume) the anchor stage of ``run``; returns the stage summary.

    ``setup`` says where and how (device, precision, input workers, data parallelism;
    default: this CPU, fp32, one process). ``stop_after`` ends the call after that many
    steps of the loop that is running (the shared pre-training first, then the anchor) without
    marking the stage done (tests use it to simulate a killed run); ``on_step`` is called
    after each step.
    """
    setup = setup or TrainSetup()
    dev, dist = setup.dev, setup.dist
    preset = run.preset()
    cfg = preset.train
    if run.stage_done("anchor"):
        return run.read_config()["stages"]["anchor"]
    check_positive(save_every, "--save-every")
    check_positive(n_train, "--n-train")
    check_positive(n_val, "--n-val")
    validate_train_config(cfg)
    dist.local_batch(cfg.anchor_batch)
    seed_everything(seed)
    anchor = dev.prepare(preset.build())
    if run.load_state("anchor") is None:
        # A fresh anchor stage: start the streams as anchor_init says (a resumed one
        # restores its own weights below, so the init runs once).
        if not initialize_streams(run, anchor, data, seed, save_every, n_train, progress, setup,
                                  stop_after, on_step):
            return {"done": False, "step": 0}
        if cfg.anchor_init != "independent":
            seed_everything(seed)
    tasks = make_tasks(preset)
    extra = l2sp_term(run, anchor, data, seed, save_every, n_train, setup)
    if extra is not None:
        seed_everything(seed)        # building the reference drew from the RNG
    done = _loop(run, "anchor", anchor, cfg.anchor_steps, lambda step: anchor_lr(cfg, step), setup, data, seed,
                 save_every, n_train, progress, "anchor (single-task streams)",
                 stop_after=stop_after, on_step=on_step, extra_loss=extra)
    if not done:
        state = run.load_state("anchor")
        return {"done": False, "step": int(state[1]["step"]) if state is not None else 0}
    anchor.eval()
    if dist.is_main:
        save_module(anchor, run.module_path("anchor"))
        val_set = make_split(preset, data, "val", n=n_val, seed=seed)
        metrics = evaluate_tree(anchor, tasks, val_set, parents=None, progress=progress,
                                description="anchor eval (val)", device=dev.device)
        # Baselines from un-augmented training scenes (augmentation zooms, which rescales depth).
        stats_set = make_split(preset, data, "train", n=n_train, augment=False, seed=seed)
        summary = {"step": cfg.anchor_steps, "val": metrics,
                   "baselines": trivial_baselines(tasks, stats_set, val_set),
                   "trained_with": setup.to_dict(), "init": cfg.anchor_init}
        run.mark_done("anchor", summary)
    dist.barrier()
    return run.read_config()["stages"]["anchor"]
