"""All training stages in order: anchor -> edge hypernet -> weight hypernet.

This is DYMU's pipeline; the other methods plug into it through their registered
:class:`~dymu_rt.methods.Method` (``method`` below: its checks, its new-run config and its
trainer), which this module receives as an object (it cannot import :mod:`dymu_rt.methods`,
which sits above it). ``method=None`` is a DYMU run. :func:`dymu_rt.methods.run_training`
resolves ``--method NAME`` and calls :func:`run_training`.

Every stage is resumable, so re-running the same command after a kill continues where
it stopped, and re-running a finished run is a no-op.

The run's config.json records everything that decides what is trained: the preset with
its training settings (schedules, optimizer, regularizer), the data source (``synth`` or
an absolute dataset path) and the data options (seed, n_train, n_val). A resumed run
reuses them; an explicit value that contradicts them is refused instead of silently
training on other data or with other settings.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

from dymu_rt.control.regularizer import RegularizerConfig
from dymu_rt.data import make_dataset
from dymu_rt.core.errors import ValidationError
from dymu_rt.models.presets import Preset, TrainDefaults, get_preset
from dymu_rt.models.pretrained import load_pretrained_backbone
from dymu_rt.training.anchor import train_anchor
from dymu_rt.run.layout import DEFAULT_METHOD, RunDir, method_of
from dymu_rt.training.common import check_anchor_init, check_positive, validate_train_config
from dymu_rt.training.controller import train_edge, train_weight
from dymu_rt.training.phn import train_phn_bn
from dymu_rt.training.setup import TrainSetup

STAGE_GROUPS = {"all": ("anchor", "edge", "weight"), "anchor": ("anchor",),
                "controller": ("edge", "weight"), "phn-bn": ("phn-bn",)}

DATA_OPTIONS = ("seed", "n_train", "n_val")
_OPTION_FLAGS = {"seed": "--seed", "n_train": "--n-train", "n_val": "--n-val"}

# Which stages a training setting changes (a finished stage cannot take a new value).
# Every regularizer setting (the RegularizerConfig fields) is stage 1's alone.
_EDGE_ONLY = tuple(f.name for f in dataclasses.fields(RegularizerConfig)) + (
    "affinity_samples", "gumbel_every", "edge_steps", "identity_prior", "identity_prior_learnable", "identity_prior_c_slope", "edge_eta", "edge_hard_gumbel", "edge_prefs_per_step")
_STEP_FIELDS = ("anchor_steps", "edge_steps", "weight_steps", "phn_steps")


def _stages_of(field: str) -> tuple[str, ...]:
    if field.startswith("anchor_"):
        return ("anchor",)
    if field in _EDGE_ONLY:
        return ("edge",)
    if field == "weight_steps":
        return ("weight",)
    if field == "phn_steps":
        return ("phn-bn",)
    return ("edge", "weight")       # controller_batch, controller_lr, decay_every, decay_gamma, ...


def resolve_data(data: Optional[str]) -> str:
    """"synth", or the dataset folder as an absolute path (what the run config stores)."""
    if data is None or str(data) == "synth":
        return "synth"
    return str(Path(data).expanduser().resolve())


def validate_data(preset: Preset, data: str) -> None:
    """DataError/ValidationError unless ``data`` serves ``preset``'s tasks (both splits)."""
    tasks = [t.name for t in preset.tasks]
    for split in ("train", "val"):
        make_dataset(data, split, size=tuple(preset.input_size), tasks=tasks, n=1)
        if data == "synth":
            break


def _check_data_options(seed, n_train, n_val) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValidationError(f"--seed {seed!r} is not valid; expected an integer >= 0")
    check_positive(n_train, "--n-train")
    check_positive(n_val, "--n-val")


def _check_overrides(overrides: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(TrainDefaults)}
    for k in overrides:
        if k not in fields:
            raise ValidationError(f"unknown training setting '{k}'; expected one of {', '.join(sorted(fields))}")


def _apply_overrides(run: RunDir, stored: Preset, overrides: dict[str, Any]) -> None:
    """Store schedule/optimizer/regularizer overrides, refusing ones a stage already used."""
    cfg = run.read_config()
    changed = {k: v for k, v in overrides.items() if getattr(stored.train, k) != v}
    for k, v in changed.items():
        for stage in _stages_of(k):
            done = bool(cfg["stages"].get(stage, {}).get("done"))
            started = (run.path / "state" / f"{stage}.json").is_file()
            if stage == "anchor":      # its shared pre-training is part of it
                started = started or (run.path / "state" / "anchor-pretrain.json").is_file() or \
                    bool(cfg["stages"].get("anchor-pretrain", {}).get("done"))
            if done or (started and k not in _STEP_FIELDS):
                raise ValidationError(
                    f"{run.path}: stage '{stage}' {'finished' if done else 'started'} with "
                    f"{k}={getattr(stored.train, k)!r}; it cannot change to {v!r} (use another --out)")
    if changed:
        updated = stored.with_train(**changed)
        validate_train_config(updated.train)
        run.update_preset(updated)


def open_run(out: str | Path, preset: Optional[str], data: Optional[str],
             overrides: Optional[dict] = None, seed: Optional[int] = None,
             n_train: Optional[int] = None, n_val: Optional[int] = None,
             method=None, flow: Optional[int] = None) -> RunDir:
    """Create a run for ``preset`` at ``out``, or reopen the run there (resume).

    Training-setting ``overrides`` (e.g. anchor_steps, anchor_optimizer, tau) apply to a
    new run, or to a resumed run whose stages they concern have not used them yet. The
    data source is validated (layout and tasks) before anything is written. ``seed``,
    ``n_train``, ``n_val`` given here are recorded in a new run, and checked against the
    recorded ones when resuming (see :func:`data_options`). ``method`` (a registered
    :class:`~dymu_rt.methods.Method`, None = DYMU) checks its options (``flow``: the DAG's
    flow constant), its preset, and writes its own config entries (a static-architecture
    run's stage lengths come from the stage-length overrides).
    """
    run = RunDir(out)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_overrides(overrides)
    _check_data_options(seed, n_train, n_val)
    _check_method_options(method, flow)
    if run.exists():
        have, want = method_of(run), _name(method, run)
        if have != want:
            raise ValidationError(f"{run.path} holds a run of method '{have}', not '{want}'; use another --out")
        if method is not None:
            method.check_resume(run, overrides, flow)
        cfg = run.read_config()
        stored = run.preset()
        if preset is not None and preset != stored.name:
            raise ValidationError(f"{out} holds a run of preset '{stored.name}', not '{preset}'; "
                                  "use another --out")
        if data is not None:
            saved = cfg["data"]
            if resolve_data(data) not in (saved, resolve_data(saved)):
                raise ValidationError(f"{out} was trained on data '{saved}', not '{resolve_data(data)}'")
        _merge_data_options(run, cfg, seed, n_train, n_val)
        if overrides and method is None:
            _apply_overrides(run, stored, overrides)
        return run
    if preset is None:
        raise ValidationError(f"{out} is not a run yet: give --preset (e.g. --preset synth-nyu)")
    p: Preset = get_preset(preset)
    if method is not None:
        method.check_preset(p)
    if overrides:
        p = p.with_train(**overrides)
    validate_train_config(p.train)
    if p.train.anchor_init.startswith("pretrained:"):
        # Refuse a missing / mis-shaped key now, before the run folder exists.

        load_pretrained_backbone(p.build(), p.train.anchor_init[len("pretrained:"):])
    source = resolve_data(data)
    validate_data(p, source)
    extra = {}
    if any(v is not None for v in (seed, n_train, n_val)):
        extra["data_options"] = {"seed": 0 if seed is None else seed, "n_train": n_train, "n_val": n_val}
    if method is not None:
        extra.update(method.new_run_extra(p, overrides, flow))
    run.init(p, data=source, extra=extra)
    return run


def _merge_data_options(run: RunDir, cfg: dict, seed, n_train, n_val) -> Optional[dict]:
    """The saved data options with explicit values checked against them (None if none saved)."""
    saved = cfg.get("data_options")
    if not isinstance(saved, dict):
        return None
    given = {"seed": seed, "n_train": n_train, "n_val": n_val}
    for k, v in given.items():
        if v is not None and saved.get(k) != v:
            was = "the dataset default" if saved.get(k) is None else f"{_OPTION_FLAGS[k]} {saved.get(k)}"
            raise ValidationError(f"{run.path} was trained with {was}, not {_OPTION_FLAGS[k]} {v}; "
                                  f"omit {_OPTION_FLAGS[k]} to reuse it, or use another --out")
    return {k: saved.get(k, 0 if k == "seed" else None) for k in DATA_OPTIONS}


def data_options(run: RunDir, seed: Optional[int] = None, n_train: Optional[int] = None,
                 n_val: Optional[int] = None) -> dict:
    """The run's (seed, n_train, n_val): the recorded ones (explicit contradictions refused),
    or, for a run that has none recorded yet, the given ones (seed 0 by default), recorded now."""
    _check_data_options(seed, n_train, n_val)
    cfg = run.read_config()
    merged = _merge_data_options(run, cfg, seed, n_train, n_val)
    if merged is not None:
        return merged
    opts = {"seed": 0 if seed is None else seed, "n_train": n_train, "n_val": n_val}
    run.set_config_entry("data_options", opts)
    return opts


# How a run is trained (not what): recorded in the run so a resume reuses them, but any
# of them may change on resume (another device, more workers): none changes the data
# stream, and a resumed run on another device continues from the same step.
SETUP_OPTIONS = ("device", "precision", "channels_last", "workers", "sync_bn")
_SETUP_DEFAULTS = {"device": "auto", "precision": "fp32", "channels_last": False, "workers": 0,
                   "sync_bn": False}


def setup_options(out: str | Path, **given: Any) -> dict[str, Any]:
    """The training-setup options for ``out``: the given ones (None = not given), else the
    ones the run recorded last time, else the defaults (auto device, fp32, no workers)."""
    unknown = set(given) - set(SETUP_OPTIONS)
    if unknown:
        raise ValidationError(f"unknown setup option(s) {sorted(unknown)}; expected {', '.join(SETUP_OPTIONS)}")
    run = RunDir(out)
    saved = run.read_config().get("train_setup", {}) if run.exists() else {}
    saved = saved if isinstance(saved, dict) else {}
    return {k: given[k] if given.get(k) is not None else saved.get(k, _SETUP_DEFAULTS[k]) for k in SETUP_OPTIONS}


def _check_method_options(method, flow) -> None:
    if method is not None:
        method.check_options(flow)
    elif flow is not None:
        raise ValidationError(f"--flow applies to --method dag only (got --method {_name(None)})")


def _name(method, run: Optional[RunDir] = None) -> str:
    """The method's registered name; a DYMU run's (no ``method``) as runs record it."""
    return DEFAULT_METHOD if method is None else method.name


def train(run: RunDir, stages: str = "all", seed: Optional[int] = None, n_train: Optional[int] = None,
          n_val: Optional[int] = None, progress: bool = True, save_every: int = 100,
          setup=None, setup_record: Optional[dict] = None, trainer=None) -> dict:
    """Run the stages of ``stages`` ("all", "anchor", "controller", "phn-bn"); returns the config.

    ``seed``, ``n_train``, ``n_val``: None reuses the run's recorded values. ``setup``
    (a :class:`~dymu_rt.training.setup.TrainSetup`): device, precision, workers and data
    parallelism (default: CPU, fp32, one process). ``setup_record``: the setup options
    as given (e.g. ``device="auto"``), stored in the run for the next resume. Under
    torchrun, every rank calls this; rank 0 alone writes the run folder. ``trainer``: a
    method's own trainer (``trainer(run, data, seed, n_train, n_val, progress, save_every=,
    setup=)``; a static method's :meth:`Method.train <dymu_rt.methods.Method.train>` passes
    it), run after the same data-option and setup bookkeeping instead of DYMU's stages.
    """
    setup = setup or TrainSetup()
    if trainer is None:
        if "method_config" in run.read_config():
            raise ValidationError(f"{run.path} is a {method_of(run)} run: train it with `dymu-rt train --out "
                                  f"{run.path}` (dymu_rt.methods.train), not DYMU's stages")
        if stages not in STAGE_GROUPS:
            raise ValidationError(f"stage group '{stages}' is not valid; expected one of {', '.join(STAGE_GROUPS)}")
    check_positive(save_every, "--save-every")

    def record() -> dict:
        opts = data_options(run, seed, n_train, n_val)
        if setup_record is not None:
            run.set_config_entry("train_setup", setup_record)
        return opts

    opts = setup.dist.main_first(record)
    if trainer is not None:
        return trainer(run, run.read_config()["data"], opts["seed"], opts["n_train"], opts["n_val"], progress,
                       save_every=save_every, setup=setup)
    seed, n_train, n_val = opts["seed"], opts["n_train"], opts["n_val"]
    data = run.read_config()["data"]
    for stage in STAGE_GROUPS[stages]:
        if stage == "anchor":
            train_anchor(run, data, seed, save_every, n_train, n_val, progress, setup=setup)
        elif stage == "edge":
            train_edge(run, data, seed, save_every, n_train, n_val, progress, setup=setup)
        elif stage == "weight":
            train_weight(run, data, seed, save_every, n_train, progress, setup=setup)
        else:
            if not run.stage_done("anchor"):
                raise ValidationError(f"{run.path}: train the anchor first (dymu-rt train anchor)")
            train_phn_bn(run, data, seed, n_train, progress, setup=setup)
    return run.read_config()


# -- the command line's options, checked here (the CLI only parses) --------------------------

def _check(option: str, value, minimum: float, strict: bool = False) -> None:
    if value is None:
        return
    if (value <= minimum) if strict else (value < minimum):
        raise ValidationError(f"{option} {value} is not valid; expected {'>' if strict else '>='} {minimum:g}")


def _choice(option: str, value: Optional[str], choices: tuple[str, ...]) -> Optional[str]:
    if value is None:
        return None
    if value.lower() not in choices:
        raise ValidationError(f"{option} '{value}' is not valid; expected one of {', '.join(choices)}")
    return value.lower()


def anchor_overrides(steps, batch, lr, optimizer, schedule, weight_decay, init: Optional[str] = None,
                     pretrain_steps: Optional[int] = None, l2sp: Optional[float] = None) -> dict:
    """Anchor-stage settings from the command line's options (validated; None = the preset's).

    ``init``: independent | shared | pretrained:FILE (FILE made absolute and checked against
    the preset when the run is created, before anything is written)."""

    _check("--lr", lr, 0, strict=True)
    _check("--weight-decay", weight_decay, 0)
    _check("--l2sp", l2sp, 0)
    check_positive(pretrain_steps, "--pretrain-steps")
    if init is not None:
        check_anchor_init(init)
        if init.startswith("pretrained:"):
            init = "pretrained:" + str(Path(init[len("pretrained:"):]).expanduser().resolve())
    return {"anchor_init": init, "anchor_pretrain_steps": pretrain_steps,
            "anchor_steps": steps, "anchor_batch": batch, "anchor_lr": lr,
            "anchor_optimizer": _choice("--optimizer", optimizer, ("adamw", "adam", "sgd")),
            "anchor_schedule": _choice("--schedule", schedule, ("cosine", "step")),
            "anchor_weight_decay": weight_decay, "anchor_l2sp": l2sp}


def regularizer_overrides(tau, lambda_a, lambda_i, no_inactive, no_layer_w, no_affinity,
                          no_dichotomy, active_reading: Optional[str] = None, inactive: bool = False) -> dict:
    """Stage-1 regularizer settings from the command line's options (validated; None = the preset's)."""
    if tau is not None and not 0 < tau <= 1:
        raise ValidationError(f"--tau {tau} is not valid; expected 0 < tau <= 1 (a threshold on r_i)")
    _check("--lambda-a", lambda_a, 0)
    _check("--lambda-i", lambda_i, 0)
    if no_inactive and inactive:
        raise ValidationError("--inactive-loss and --no-inactive-loss contradict each other; give one")
    return {"tau": tau, "lambda_active": lambda_a, "lambda_inactive": lambda_i,
            "inactive_loss": False if no_inactive else (True if inactive else None),
            "layer_weighting": False if no_layer_w else None,
            "use_affinity": False if no_affinity else None,
            "dichotomy": False if no_dichotomy else None,
            "active_reading": _choice("--active-reading", active_reading, ("printed", "child"))}


def edge_overrides(identity_prior: Optional[float], learnable: Optional[bool], c_slope: Optional[float] = None,
                   c_zero_share: Optional[float] = None) -> dict:
    """Controller-stage settings from the command line: the edge hypernet's identity prior and how
    c is sampled (None = the preset's)."""
    if identity_prior is not None and not (identity_prior >= 0 and math.isfinite(identity_prior)):
        raise ValidationError(f"--identity-prior {identity_prior} is not valid; expected a number >= 0 (0 = off)")
    if c_slope is not None and not 0 <= c_slope <= 1:
        raise ValidationError(f"--identity-prior-c-slope {c_slope} is not valid; expected a number in [0, 1]")
    if c_zero_share is not None and not 0 <= c_zero_share < 1:
        raise ValidationError(f"--c-zero-share {c_zero_share} is not valid; expected a number in [0, 1)")
    return {"identity_prior": identity_prior, "identity_prior_learnable": learnable,
            "identity_prior_c_slope": c_slope, "c_zero_share": c_zero_share}


#: the overrides checked as counts >= 1, and the command-line flag each message names
OVERRIDE_FLAGS = {"anchor_steps": "--anchor-steps", "edge_steps": "--edge-steps", "weight_steps": "--weight-steps",
                  "phn_steps": "--steps", "anchor_batch": "--batch", "controller_batch": "--batch"}


def run_training(out: str | Path, stages: str, preset: Optional[str] = None, data: Optional[str] = None,
                 overrides: Optional[dict] = None, seed: Optional[int] = None, n_train: Optional[int] = None,
                 n_val: Optional[int] = None, progress: bool = True, save_every: int = 100,
                 flags: Optional[dict] = None, method=None, flow: Optional[int] = None,
                 **setup_given: Any) -> dict:
    """``dymu-rt train``'s whole job, on one process or on every rank under torchrun.

    Checks every option first (``flags`` names the command-line flag of each setting, for the
    messages; nothing is written before every option has been checked), resolves the setup
    options (given, else recorded in the run, else defaults), joins the process group when
    launched by torchrun, creates or reopens the run on rank 0 (the others open it after),
    trains ``stages`` and leaves the process group. Returns the run config.
    """
    overrides = overrides or {}
    flags = {**OVERRIDE_FLAGS, **(flags or {})}
    for key, flag in flags.items():
        check_positive(overrides.get(key), flag)
    check_positive(save_every, "--save-every")
    for key, value in overrides.items():
        # Stages that train BatchNorm need >= 2 samples per batch (a batch of one on the
        # R-ASPP pooling branch's 1x1 map has no per-channel statistics); the controller
        # stages run the anchor frozen (eval mode), where one sample is fine.
        if key.endswith("batch") and key != "controller_batch" and value == 1 and not isinstance(value, bool):
            raise ValidationError(f"{flags.get(key, key)} 1: training BatchNorm layers needs at least 2 samples "
                                  "per batch (the pooling branch of R-ASPP sees a 1x1 map); use 2 or more")
    _check_data_options(seed, n_train, n_val)
    _check("--workers", setup_given.get("workers"), 0)
    options = setup_options(out, **setup_given)
    _check_method_options(method, flow)
    setup = TrainSetup.create(**options)

    def create_or_reopen() -> None:
        open_run(out, preset, data, overrides, seed=seed, n_train=n_train, n_val=n_val, method=method, flow=flow)

    try:
        setup.dist.main_first(create_or_reopen)
        run = RunDir(out)
        train_run = train if method is None else method.train
        return train_run(run, stages, seed=seed, n_train=n_train, n_val=n_val,
                         progress=progress and setup.dist.is_main, save_every=save_every, setup=setup,
                         setup_record=options)
    finally:
        setup.dist.close()
