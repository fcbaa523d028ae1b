"""Stage "anchor": train each stream of the anchor net on its own task.

On the identity tree, head j reads only stream j, so the sum of the task losses trains
the N streams independently (the paper's anchor initialization) in one pass. The stage
is resumable: model, optimizer and RNG state are saved atomically every ``save_every``
steps, and a killed run continues from the last save.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from dymu_rt.train.checkpoint import RunDir, optimizer_tensors, save_module
from dymu_rt.train.common import (JsonlLog, anchor_lr, check_positive, infinite_batches,
                                  make_anchor_optimizer, make_split, make_tasks, restore_rng,
                                  rng_state, seed_everything, set_lr, validate_train_config,
                                  weighted_task_loss)
from dymu_rt.train.evaluation import evaluate_tree, trivial_baselines
from dymu_rt.utils.progress import make_progress


def train_anchor(run: RunDir, data: str = "synth", seed: int = 0, save_every: int = 100,
                 n_train: Optional[int] = None, n_val: Optional[int] = None, progress: bool = True,
                 stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None) -> dict:
    """Train (or resume) the anchor stage of ``run``; returns the stage summary.

    ``stop_after`` ends the call after that many steps in total without marking the stage
    done (tests use it to simulate a killed run); ``on_step`` is called after each step.
    """
    preset = run.preset()
    cfg = preset.train
    if run.stage_done("anchor"):
        return run.read_config()["stages"]["anchor"]
    check_positive(save_every, "--save-every")
    check_positive(n_train, "--n-train")
    check_positive(n_val, "--n-val")
    validate_train_config(cfg)
    seed_everything(seed)
    anchor = preset.build()
    tasks = make_tasks(preset)
    opt = make_anchor_optimizer(anchor.parameters(), cfg)
    start = 0
    state = run.load_state("anchor")
    log = JsonlLog(run.path / "logs" / "anchor.jsonl")
    if state is not None:
        tensors, meta = state
        run.restore_state("anchor", anchor, opt, tensors, meta)
        restore_rng(tensors)
        start = int(meta["step"])
        log.truncate_after(start)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    batches = infinite_batches(train_set, cfg.anchor_batch, seed, start_step=start)
    anchor.train()
    total = cfg.anchor_steps

    def save(step: int) -> None:
        tensors = {f"model.{k}": v for k, v in anchor.state_dict().items()}
        opt_t, opt_meta = optimizer_tensors(opt)
        tensors.update(opt_t)
        tensors.update(rng_state())
        run.save_state("anchor", tensors, {"step": step, "optimizer": opt_meta})

    with make_progress(disable=not progress) as bar:
        job = bar.add_task("anchor (single-task streams)", total=total, completed=start, info="")
        step = start
        while step < total:
            if stop_after is not None and step >= stop_after:
                save(step)
                return {"done": False, "step": step}
            batch = next(batches)
            set_lr(opt, anchor_lr(cfg, step))
            out = anchor(batch["image"])
            loss, per = weighted_task_loss(tasks, out, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 10 == 0 or step == total:
                log.write({"step": step, "loss": float(loss.detach()), **{t.name: float(v) for t, v in zip(tasks, per)}})
            bar.update(job, advance=1, info=" ".join(f"{t.name}={float(v):.3f}" for t, v in zip(tasks, per)))
            if step % save_every == 0 and step < total:
                save(step)
            if on_step is not None:
                on_step(step)
    anchor.eval()
    save_module(anchor, run.module_path("anchor"))
    val_set = make_split(preset, data, "val", n=n_val, seed=seed)
    metrics = evaluate_tree(anchor, tasks, val_set, parents=None, progress=progress,
                            description="anchor eval (val)")
    # Baselines from un-augmented training scenes (augmentation zooms, which rescales depth).
    stats_set = make_split(preset, data, "train", n=n_train, augment=False, seed=seed)
    summary = {"step": total, "val": metrics, "baselines": trivial_baselines(tasks, stats_set, val_set)}
    run.mark_done("anchor", summary)
    return run.read_config()["stages"]["anchor"]
