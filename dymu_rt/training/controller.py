"""Controller training (paper, Algorithm 1).

Stage "edge": the anchor net is frozen; the edge hypernet h(r, c) is trained on
Σ_i r_i w_i L_i + Ω with the anchor executed as a supernet whose node inputs are
Gumbel-softmax samples ν of h's logits (temperature ζ: 5, ×0.97 every 300 steps), and
Ω the branching regularizer with the RSA task affinity of the frozen anchor.

Stage "weight": the anchor and h are frozen; the weight hypernet h̄(r, c) is trained on
Σ_i r_i w_i L_i with the anchor executing h's maximum-likelihood tree and its BNs
modulated by h̄'s (Δγ, Δβ).

Preferences are sampled per step: r ~ Dir(η = 0.2), c ~ U(0, 1). Adam 1e-3 with step
decay ×0.3. Both stages are resumable like the anchor stage.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

import numpy as np
import torch

from dymu_rt.control.affinity import compute_affinity
from dymu_rt.control.gumbel import TemperatureSchedule, gumbel_softmax_sample, straight_through
from dymu_rt.control.hypernets import EdgeHypernet, WeightHypernet
from dymu_rt.core.preference import sample_preferences
from dymu_rt.control.regularizer import branching_regularizer
from dymu_rt.core.errors import CheckpointError
from dymu_rt.run.layout import RunDir, optimizer_tensors, save_module
from dymu_rt.training.common import (check_positive, make_split, make_tasks, regularizer_config as _regularizer_config,
                                     restore_rng, rng_state, seed_everything, set_lr, step_decay_lr,
                                     validate_train_config, weighted_task_loss)
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.device import fp32_outputs
from dymu_rt.training.setup import TrainSetup, backward_step, restore_scaler, scaler_meta
from dymu_rt.core.io import atomic_write_json, read_json
from dymu_rt.utils.progress import make_progress


def _sample_pref(rng: np.random.Generator, n: int, eta: float = 0.2, device=None, c_zero_share: float = 0.0):
    """One training preference: r ~ Dir(eta), c ~ U(0, 1), and with probability
    ``c_zero_share`` c = 0 exactly (one extra draw from ``rng`` only when the share is > 0,
    so share 0 keeps the paper's stream of samples bit for bit)."""
    p = sample_preferences(n, 1, rng, eta=eta)[0]
    c = p.c
    if c_zero_share > 0 and rng.uniform() < c_zero_share:
        c = 0.0
    return (torch.tensor(p.r, dtype=torch.float32, device=device),
            torch.tensor(c, dtype=torch.float32, device=device))


def _require(run: RunDir, stage: str) -> None:
    if not run.stage_done(stage):
        raise CheckpointError(f"{run.path}: stage '{stage}' must finish first "
                              f"(run `dymu-rt train --out {run.path}`)")


def compute_run_affinity(run: RunDir, anchor, data: str, seed: int, n_val: Optional[int],
                         setup: Optional[TrainSetup] = None) -> np.ndarray:
    """RSA task affinity of the frozen anchor on K validation images (cached in the run).

    Computed on rank 0 (on the anchor's device) and written there; every rank gets rank 0's.
    """
    setup = setup or TrainSetup()
    path = run.path / "affinity.json"
    preset = run.preset()
    a = np.zeros((len(preset.tasks), len(preset.tasks)), dtype=np.float64)
    if setup.dist.is_main:
        if path.is_file():
            a = np.asarray(read_json(path, "task affinity")["affinity"], dtype=np.float64)
        else:
            k = preset.train.affinity_samples
            val = make_split(preset, data, "val", n=n_val, seed=seed)
            images = torch.stack([val[i]["image"] for i in range(min(k, len(val)))])
            a = np.asarray(compute_affinity(anchor, images.to(setup.device), images.shape[0]), dtype=np.float64)
            atomic_write_json(path, {"affinity": a.tolist(), "tasks": [t.name for t in preset.tasks],
                                     "k": int(images.shape[0])})
    if setup.dist.enabled:
        t = setup.dist.broadcast_tensor(torch.tensor(a, device=setup.device))
        a = t.cpu().numpy()
    return a


class _Stage:
    """Resumable loop shared by the two controller stages.

    ``module`` is the hypernet being trained (on ``setup``'s device); ``model`` is what the
    step calls: the module itself, or its DDP wrapper under torchrun.
    """

    def __init__(self, run: RunDir, name: str, module: torch.nn.Module, steps: int, seed: int,
                 save_every: int, setup: TrainSetup) -> None:
        check_positive(save_every, "--save-every")
        self.run, self.name, self.steps, self.save_every, self.setup = run, name, steps, save_every, setup
        self.module = setup.dev.prepare(module)
        preset = run.preset()
        self.cfg = preset.train
        validate_train_config(self.cfg)
        setup.dist.local_batch(self.cfg.controller_batch)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=self.cfg.controller_lr)
        self.scaler = setup.dev.grad_scaler()
        self.start = 0
        self.rng = np.random.default_rng(seed + (1 if name == "edge" else 2))
        self.log = JsonlLog(run.path / "logs" / f"{name}.jsonl") if setup.dist.is_main else None
        state = run.load_state(name)
        if state is not None:
            tensors, meta = state
            run.restore_state(name, self.module, self.opt, tensors, meta)
            restore_rng(tensors, setup.device)
            restore_scaler(self.scaler, meta.get("scaler"))
            try:
                self.rng.bit_generator.state = meta["np_rng"]
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"training state of stage '{name}' in {run.path} has no valid "
                                      f"numpy RNG state ({e}); delete the state/ folder of the run "
                                      "to restart the stage") from None
            self.start = int(meta["step"])
            if self.log is not None:
                self.log.truncate_after(self.start)
        self.model = setup.dist.wrap(self.module, setup.device)

    def lr(self, step: int) -> float:
        return step_decay_lr(self.cfg.controller_lr, step, self.cfg.decay_every, self.cfg.decay_gamma)

    def save(self, step: int) -> None:
        if not self.setup.dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.module.state_dict().items()}
        opt_t, opt_meta = optimizer_tensors(self.opt)
        tensors.update(opt_t)
        tensors.update(rng_state(self.setup.device))
        self.run.save_state(self.name, tensors, {"step": step, "optimizer": opt_meta,
                                                 "np_rng": self.rng.bit_generator.state,
                                                 "scaler": scaler_meta(self.scaler)})

    def finish(self, summary: dict) -> dict:
        """Save the trained module and mark the stage done (rank 0); every rank waits."""
        if self.setup.dist.is_main:
            save_module(self.module, self.run.module_path(_MODULE_FILES[self.name]))
            self.run.mark_done(self.name, {**summary, "trained_with": self.setup.to_dict()})
        self.setup.dist.barrier()
        return self.run.read_config()["stages"][self.name]


_MODULE_FILES = {"edge": "edge_hypernet", "weight": "weight_hypernet"}


def _loop(stage: _Stage, step_fn, progress: bool, description: str, stop_after, on_step) -> bool:
    """Run ``step_fn(step) -> (loss, info dict)``; False when stopped early.

    ``info`` values may be tensors: they are read (a device sync) only on logged steps.
    """
    dist = stage.setup.dist
    with make_progress(disable=not (progress and dist.is_main)) as bar:
        job = bar.add_task(description, total=stage.steps, completed=stage.start, info="")
        step = stage.start
        while step < stage.steps:
            if stop_after is not None and step >= stop_after:
                stage.save(step)
                dist.barrier()
                return False
            set_lr(stage.opt, stage.lr(step))
            loss, info = step_fn(step)
            backward_step(loss, stage.opt, stage.scaler)
            step += 1
            if step % 10 == 0 or step == stage.steps:
                loss_g = float(dist.mean(loss.detach()))
                if stage.log is not None:
                    stage.log.write({"step": step, "loss": loss_g, **{k: float(v) for k, v in info.items()}})
                bar.update(job, info=f"loss={loss_g:.3f}")
            bar.update(job, advance=1)
            if step % stage.save_every == 0 and step < stage.steps:
                stage.save(step)
            if on_step is not None:
                on_step(step)
    return True


def train_edge(run: RunDir, data: str = "synth", seed: int = 0, save_every: int = 100,
               n_train: Optional[int] = None, n_val: Optional[int] = None, progress: bool = True,
               stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None,
               regularizer_config=None, setup: Optional[TrainSetup] = None) -> dict:
    """Stage 1: train the edge hypernet with the branching regularizer.

    Under data parallelism every rank draws the same (r, c) and Gumbel noise (same seed,
    same RNG stream), so the ranks differ only in their slice of the batch.
    """
    setup = setup or TrainSetup()
    dev = setup.dev
    if run.stage_done("edge"):
        return run.read_config()["stages"]["edge"]
    _require(run, "anchor")
    check_positive(n_train, "--n-train")
    check_positive(n_val, "--n-val")
    preset = run.preset()
    cfg = preset.train
    seed_everything(seed + 11)
    anchor = dev.prepare(run.load_anchor())
    tasks = make_tasks(preset)
    n = len(tasks)
    affinity = torch.tensor(compute_run_affinity(run, anchor, data, seed, n_val, setup),
                            dtype=torch.float32, device=dev.device)
    reg_cfg = regularizer_config or _regularizer_config(cfg)
    edge = EdgeHypernet(n, anchor.num_layers, identity_prior=cfg.identity_prior,
                        learnable_prior=cfg.identity_prior_learnable, prior_c_slope=cfg.identity_prior_c_slope)
    stage = _Stage(run, "edge", edge, cfg.edge_steps, seed, save_every, setup)
    schedule = TemperatureSchedule(every=cfg.gumbel_interval())
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)

    with setup.batches(train_set, cfg.controller_batch, seed + 1, start_step=stage.start) as batches:
        def one_preference(step: int, r, c, batch):
            logits = stage.model(r, c)
            # Gumbel sampling and Ω stay in fp32; only the anchor's forward is autocast.
            nu = gumbel_softmax_sample(logits.float(), schedule.at(step))
            # edge_hard_gumbel: the discrete tree of this sample forward, ν's gradient back.
            mix = straight_through(nu) if cfg.edge_hard_gumbel else nu
            with dev.autocast():
                out = anchor.forward_soft(batch["image"], list(mix))
            task_loss, per = weighted_task_loss(tasks, fp32_outputs(out), batch, r)
            omega, terms = branching_regularizer(nu, r, c, affinity, reg_cfg)
            return task_loss, omega, terms

        def step_fn(step: int):
            k = cfg.edge_prefs_per_step
            prefs = [_sample_pref(stage.rng, n, eta=cfg.edge_eta, device=dev.device, c_zero_share=cfg.c_zero_share)
                     for _ in range(k)]
            batch = dev.batch(next(batches))
            # Eq. 2's expectation over (r, c): one sample per step (the paper, k = 1) or k
            # samples, each on its own slice of the batch, averaged.
            parts = [one_preference(step, r, c, sub) for (r, c), sub in zip(prefs, _split_batch(batch, k))]
            task_loss = sum(p[0] for p in parts) / k
            omega = sum(p[1] for p in parts) / k
            terms = {key: sum(p[2][key] for p in parts) / k for key in parts[0][2]}
            info = {"task_loss": task_loss.detach(), "omega": omega.detach(), "c": sum(c for _, c in prefs) / k,
                    "temperature": schedule.at(step),
                    **{key: v.detach() if torch.is_tensor(v) else v for key, v in terms.items()
                       if torch.is_tensor(v) or isinstance(v, float)}}
            return task_loss + omega, info

        if not _loop(stage, step_fn, progress, "stage 1: edge hypernet", stop_after, on_step):
            return {"done": False}
    return stage.finish({"step": cfg.edge_steps, "regularizer": _cfg_dict(reg_cfg)})


def _split_batch(batch, k: int) -> list:
    """``batch`` (nested dicts of tensors) as k slices along the batch dimension (k = 1: itself)."""
    if k == 1:
        return [batch]
    if isinstance(batch, dict):
        parts = {key: _split_batch(v, k) for key, v in batch.items()}
        return [{key: parts[key][i] for key in batch} for i in range(k)]
    if torch.is_tensor(batch):
        return list(torch.tensor_split(batch, k, dim=0))
    return [batch] * k


def _cfg_dict(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else json.loads(json.dumps(cfg, default=str))


def train_weight(run: RunDir, data: str = "synth", seed: int = 0, save_every: int = 100,
                 n_train: Optional[int] = None, progress: bool = True,
                 stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None,
                 setup: Optional[TrainSetup] = None) -> dict:
    """Stage 2: train the weight hypernet on the edge hypernet's maximum-likelihood trees."""
    setup = setup or TrainSetup()
    dev = setup.dev
    if run.stage_done("weight"):
        return run.read_config()["stages"]["weight"]
    _require(run, "edge")
    check_positive(n_train, "--n-train")
    preset = run.preset()
    cfg = preset.train
    seed_everything(seed + 22)
    anchor = dev.prepare(run.load_anchor())
    edge = dev.prepare(run.load_edge_hypernet())
    for p in edge.parameters():
        p.requires_grad_(False)
    tasks = make_tasks(preset)
    n = len(tasks)
    stage = _Stage(run, "weight", WeightHypernet(n, anchor.bn_delta_size), cfg.weight_steps, seed,
                   save_every, setup)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)

    with setup.batches(train_set, cfg.controller_batch, seed + 2, start_step=stage.start) as batches:
        def step_fn(step: int):
            r, c = _sample_pref(stage.rng, n, device=dev.device, c_zero_share=cfg.c_zero_share)
            batch = dev.batch(next(batches))
            with torch.no_grad():
                parents = edge.architecture(r, c)
            deltas = stage.model(r, c)
            with dev.autocast():
                out = anchor(batch["image"], parents, deltas)
            task_loss, per = weighted_task_loss(tasks, fp32_outputs(out), batch, r)
            return task_loss, {"c": c, **{t.name: v for t, v in zip(tasks, per)}}

        if not _loop(stage, step_fn, progress, "stage 2: weight hypernet", stop_after, on_step):
            return {"done": False}
    return stage.finish({"step": cfg.weight_steps})
