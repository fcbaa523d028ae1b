"""Stage "anchor": train each stream of the anchor net on its own task.

On the identity tree, head j reads only stream j, so the sum of the task losses trains
the N streams independently (the paper's anchor initialization) in one pass. The stage
is resumable: model, optimizer and RNG state are saved atomically every ``save_every``
steps, and a killed run continues from the last save.
"""

from __future__ import annotations

from typing import Callable, Optional

from dymu_rt.train.checkpoint import RunDir, optimizer_tensors, save_module
from dymu_rt.train.common import (JsonlLog, anchor_lr, check_positive, make_anchor_optimizer, make_split,
                                  make_tasks, restore_rng, rng_state, seed_everything, set_lr,
                                  validate_train_config, weighted_task_loss)
from dymu_rt.train.device import fp32_outputs
from dymu_rt.train.distributed import sync_batchnorm, unsync_batchnorm
from dymu_rt.train.evaluation import evaluate_tree, trivial_baselines
from dymu_rt.train.setup import TrainSetup, backward_step, restore_scaler, scaler_meta
from dymu_rt.utils.progress import make_progress


def train_anchor(run: RunDir, data: str = "synth", seed: int = 0, save_every: int = 100,
                 n_train: Optional[int] = None, n_val: Optional[int] = None, progress: bool = True,
                 stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None,
                 setup: Optional[TrainSetup] = None) -> dict:
    """Train (or resume) the anchor stage of ``run``; returns the stage summary.

    ``setup`` says where and how (device, precision, input workers, data parallelism;
    default: this CPU, fp32, one process). ``stop_after`` ends the call after that many
    steps in total without marking the stage done (tests use it to simulate a killed
    run); ``on_step`` is called after each step.
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
    tasks = make_tasks(preset)
    opt = make_anchor_optimizer(anchor.parameters(), cfg)
    scaler = dev.grad_scaler()
    start = 0
    state = run.load_state("anchor")
    log = JsonlLog(run.path / "logs" / "anchor.jsonl") if dist.is_main else None
    if state is not None:
        tensors, meta = state
        run.restore_state("anchor", anchor, opt, tensors, meta)
        restore_rng(tensors, dev.device)
        restore_scaler(scaler, meta.get("scaler"))
        start = int(meta["step"])
        if log is not None:
            log.truncate_after(start)
    # BN in training mode is the one place where ranks would differ from one big batch.
    synced = sync_batchnorm(anchor, dist) if setup.sync_bn else []
    model = dist.wrap(anchor, dev.device)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    anchor.train()
    total = cfg.anchor_steps

    def save(step: int) -> None:
        if not dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in anchor.state_dict().items()}
        opt_t, opt_meta = optimizer_tensors(opt)
        tensors.update(opt_t)
        tensors.update(rng_state(dev.device))
        run.save_state("anchor", tensors, {"step": step, "optimizer": opt_meta, "scaler": scaler_meta(scaler)})

    with setup.batches(train_set, cfg.anchor_batch, seed, start_step=start) as batches, \
            make_progress(disable=not (progress and dist.is_main)) as bar:
        job = bar.add_task("anchor (single-task streams)", total=total, completed=start, info="")
        step = start
        while step < total:
            if stop_after is not None and step >= stop_after:
                save(step)
                dist.barrier()
                return {"done": False, "step": step}
            batch = dev.batch(next(batches))
            set_lr(opt, anchor_lr(cfg, step))
            with dev.autocast():
                out = model(batch["image"])
            loss, per = weighted_task_loss(tasks, fp32_outputs(out), batch)
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
    anchor.eval()
    if dist.is_main:
        save_module(anchor, run.module_path("anchor"))
        val_set = make_split(preset, data, "val", n=n_val, seed=seed)
        metrics = evaluate_tree(anchor, tasks, val_set, parents=None, progress=progress,
                                description="anchor eval (val)", device=dev.device)
        # Baselines from un-augmented training scenes (augmentation zooms, which rescales depth).
        stats_set = make_split(preset, data, "train", n=n_train, augment=False, seed=seed)
        summary = {"step": total, "val": metrics, "baselines": trivial_baselines(tasks, stats_set, val_set),
                   "trained_with": setup.to_dict()}
        run.mark_done("anchor", summary)
    dist.barrier()
    return run.read_config()["stages"]["anchor"]
