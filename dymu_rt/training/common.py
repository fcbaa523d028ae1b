"""Pieces shared by the training stages: data iterators, task objects, schedules.

A run's logs (``logs/*.jsonl``) are written with :class:`dymu_rt.run.logs.JsonlLog`."""

from __future__ import annotations

import math
import random
from typing import Optional

import numpy as np
import torch

from dymu_rt.control.regularizer import RegularizerConfig
from dymu_rt.data import make_dataset
from dymu_rt.core.errors import CheckpointError, ValidationError
from dymu_rt.core.limits import check_threads
from dymu_rt.models.presets import Preset
from dymu_rt.tasks import make_task
from dymu_rt.training.loader import collate, infinite_batches  # noqa: F401  (their home is loader)


def make_tasks(preset: Preset) -> list:
    """The task objects (loss, metrics, visualization) of a preset, in stream order."""
    return [make_task(t.kind, t.name, num_classes=t.num_classes, loss_weight=t.loss_weight)
            for t in preset.tasks]


_SPLITS: dict[tuple, object] = {}


def make_split(preset: Preset, data: str, split: str, n: Optional[int] = None, augment: bool = False,
               seed: int = 0):
    """The dataset of ``split`` for ``preset``: ``data`` is "synth" or a dataset folder.

    Procedural splits are memoized per process: the stages of one ``train`` call (and the
    evaluation after it) share one in-memory cache of rendered scenes instead of
    rendering them again (rendering, not the model, dominates a CPU step otherwise).
    """

    key = (data, split, n, tuple(preset.input_size), tuple(t.name for t in preset.tasks), augment, seed)
    if data == "synth" and key in _SPLITS:
        return _SPLITS[key]
    ds = make_dataset(data, split, size=tuple(preset.input_size), tasks=[t.name for t in preset.tasks],
                      augment=augment, n=n, seed=seed)
    if data == "synth":
        if len(_SPLITS) >= 8:      # bound the memory held by old runs in long processes
            _SPLITS.clear()
        _SPLITS[key] = ds
    return ds


def step_decay_lr(base_lr: float, step: int, every: int, gamma: float) -> float:
    """Step decay: base · gamma^(step // every) (the paper's ×0.3 every 14K steps)."""
    return base_lr * (gamma ** (step // every)) if every > 0 else base_lr


def cosine_lr(base_lr: float, step: int, total: int, warmup: int = 0) -> float:
    """Cosine decay to 1% with optional linear warm-up (anchor training)."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state(device: Optional[torch.device] = None) -> dict[str, torch.Tensor]:
    """The torch RNG states to store with training state: CPU, plus ``device``'s CUDA
    generator (Gumbel noise of a stage on a GPU is drawn there)."""
    states = {"rng.torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(tensors: dict[str, torch.Tensor], device: Optional[torch.device] = None) -> None:
    """Restore the torch RNGs saved by :func:`rng_state` (CheckpointError if they are not).

    A CUDA state is restored only on a CUDA device: a run resumed on another device
    continues with that device's own stream.
    """
    if "rng.torch" in tensors:
        try:
            torch.set_rng_state(tensors["rng.torch"])
            if device is not None and device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        except (RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"training state holds an invalid RNG state ({str(e).splitlines()[0]}); "
                                  "delete the state/ folder of the run to restart the stage") from None


def weighted_task_loss(tasks: list, outputs: dict, batch: dict, r: Optional[torch.Tensor] = None):
    """Σ_i r_i w_i L_i (r = 1 for single-task training); returns (total, per-task losses)."""
    losses = []
    for t in tasks:
        losses.append(t.loss(outputs[t.name], batch["targets"][t.name], batch["masks"][t.name]))
    per = torch.stack(losses)
    weights = torch.tensor([t.loss_weight for t in tasks], dtype=per.dtype, device=per.device)
    if r is None:
        return per.sum(), per.detach()
    return (r * weights * per).sum(), per.detach()


def check_positive(value, option: str) -> None:
    """ValidationError unless ``value`` is None or an integer >= 1 (``option`` names it)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValidationError(f"{option} {value!r} is not valid; expected an integer >= 1")


ANCHOR_OPTIMIZERS = ("adamw", "adam", "sgd")
ANCHOR_SCHEDULES = ("cosine", "step")


ANCHOR_INITS = ("independent", "shared", "pretrained:FILE")


def check_anchor_init(value) -> None:
    """ValidationError unless ``value`` is independent | shared | pretrained:FILE."""
    if not isinstance(value, str) or not (value in ("independent", "shared") or
                                          (value.startswith("pretrained:") and len(value) > len("pretrained:"))):
        raise ValidationError(f"--init {value!r} is not valid; expected one of {', '.join(ANCHOR_INITS)}")


def pretrain_steps(cfg) -> int:
    """Steps of the shared pre-training (``anchor_init`` "shared"): ``anchor_pretrain_steps``,
    or with 0 two thirds of ``anchor_steps`` (the issue-22 experiment's 400 of 600), at least 1."""
    return cfg.anchor_pretrain_steps if cfg.anchor_pretrain_steps > 0 else max(1, cfg.anchor_steps * 2 // 3)


def validate_train_config(cfg) -> None:
    """One clear ValidationError for a bad training setting (steps, batch, optimizer...)."""
    for name in ("anchor_steps", "edge_steps", "weight_steps", "anchor_batch", "controller_batch",
                 "affinity_samples"):
        check_positive(getattr(cfg, name), f"training setting {name}")
    for name in ("anchor_lr", "controller_lr"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise ValidationError(f"learning rate {name} {v!r} is not valid; expected a number > 0")
    for name in ("anchor_finetune_lr", "anchor_l2sp", "identity_prior"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            raise ValidationError(f"training setting {name} {v!r} is not valid; expected a number >= 0 "
                                  "(0 = off)")
    for name in ("identity_prior_learnable", "edge_hard_gumbel"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValidationError(f"training setting {name} {getattr(cfg, name)!r} is not valid; "
                                  "expected true or false")
    k = cfg.edge_prefs_per_step
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cfg.controller_batch \
            or cfg.controller_batch % k:
        raise ValidationError(f"training setting edge_prefs_per_step {k!r} is not valid; expected an integer "
                              f">= 1 that divides the controller batch ({cfg.controller_batch})")
    eta = cfg.edge_eta
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (eta > 0 and math.isfinite(eta)):
        raise ValidationError(f"training setting edge_eta {eta!r} is not valid; expected a number > 0 "
                              "(the Dirichlet parameter of r in stage 1)")
    v = cfg.identity_prior_c_slope
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ValidationError(f"training setting identity_prior_c_slope {v!r} is not valid; expected a number in "
                              "[0, 1] (the prior is identity_prior x (1 - slope*c))")
    z = cfg.c_zero_share
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not 0 <= z < 1:
        raise ValidationError(f"training setting c_zero_share {z!r} is not valid; expected a number in [0, 1) "
                              "(the share of controller-stage preferences drawn at c = 0)")
    wd = cfg.anchor_weight_decay
    if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not (wd >= 0 and math.isfinite(wd)):
        raise ValidationError(f"weight decay {wd!r} is not valid; expected a number >= 0")
    if cfg.anchor_optimizer not in ANCHOR_OPTIMIZERS:
        raise ValidationError(f"optimizer '{cfg.anchor_optimizer}' is not valid; expected one of "
                              f"{', '.join(ANCHOR_OPTIMIZERS)}")
    if cfg.anchor_schedule not in ANCHOR_SCHEDULES:
        raise ValidationError(f"schedule '{cfg.anchor_schedule}' is not valid; expected one of "
                              f"{', '.join(ANCHOR_SCHEDULES)}")
    check_anchor_init(cfg.anchor_init)
    for name in ("anchor_decay_every", "decay_every", "phn_steps", "anchor_pretrain_steps"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValidationError(f"training setting {name} {v!r} is not valid; expected an integer >= 0")
    for name in ("anchor_decay_gamma", "decay_gamma"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise ValidationError(f"training setting {name} {v!r} is not valid; expected 0 < gamma <= 1")
    regularizer_config(cfg)          # validates tau, lambdas and switches


def regularizer_config(cfg):
    """The branching regularizer's config from a preset's training settings (every
    RegularizerConfig field is a TrainDefaults field of the same name)."""
    import dataclasses


    return RegularizerConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(RegularizerConfig)})


def make_anchor_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The anchor stage's optimizer from ``cfg.anchor_optimizer`` (adamw | adam | sgd)."""
    lr, wd = cfg.anchor_lr, cfg.anchor_weight_decay
    if cfg.anchor_optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if cfg.anchor_optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg.anchor_optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    raise ValidationError(f"optimizer '{cfg.anchor_optimizer}' is not valid; expected one of "
                          f"{', '.join(ANCHOR_OPTIMIZERS)}")


def anchor_lr(cfg, step: int) -> float:
    """The anchor stage's learning rate at ``step`` (cosine with warm-up, or step decay)."""
    total = cfg.anchor_steps
    base = cfg.anchor_lr
    if cfg.anchor_init != "independent" and cfg.anchor_finetune_lr > 0:
        base = cfg.anchor_finetune_lr
    if cfg.anchor_schedule == "step":
        every = cfg.anchor_decay_every or max(1, total * 14 // 30)
        return step_decay_lr(base, step, every, cfg.anchor_decay_gamma)
    return cosine_lr(base, step, total, min(50, total // 10))


def set_threads(threads: int | None, option: str = "--threads") -> None:
    """Use ``threads`` intra-op threads in PyTorch (None: leave PyTorch's default, all cores)."""
    if threads is None:
        return

    check_threads(threads, option, allow_zero=False)
    torch.set_num_threads(threads)
