"""``dymu-rt train``: the anchor net and the hypernets (all stages, or one group)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console
from dymu_rt.core.errors import ValidationError

app = typer.Typer(no_args_is_help=False, invoke_without_command=True)

_PRESET = typer.Option(None, "--preset", help="Preset name (see `dymu-rt inspect PRESET`); "
                       "optional when resuming an existing --out.")
_OUT = typer.Option(..., "--out", help="Run directory (created, or resumed if it exists).")
_DATA = typer.Option(None, "--data", help="'synth' (procedural scenes, default) or a dataset folder "
                     "in the NYU-v2 / PASCAL-Context / CIFAR-100 layout.")
_SEED = typer.Option(None, "--seed", help="Random seed (default 0; saved in the run, reused on resume).")
_N_TRAIN = typer.Option(None, "--n-train", help="Training samples (default: all / 1600 procedural; "
                        "saved in the run).")
_N_VAL = typer.Option(None, "--n-val", help="Validation samples (default: all / 400 procedural; "
                      "saved in the run).")
_SAVE_EVERY = typer.Option(100, "--save-every", help="Save resumable state every N steps.")
_BATCH = typer.Option(None, "--batch", help="Override the batch size.")
_QUIET = typer.Option(False, "--quiet", help="No progress bars.")
_THREADS = typer.Option(None, "--threads", help="PyTorch threads (default: all cores). Fewer leave room "
                        "for other work on the machine.")
# Where and how (saved in the run and reused on resume; each may change on resume).
_DEVICE = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (auto: CUDA when available; "
                       "under torchrun each rank takes cuda:LOCAL_RANK).")
_PRECISION = typer.Option(None, "--precision", help="fp32 | bf16 | fp16 (autocast; fp16 adds loss "
                          "scaling and needs CUDA). BN statistics, losses and Ω stay fp32.")
_CHANNELS_LAST = typer.Option(None, "--channels-last/--no-channels-last",
                              help="NHWC activations (faster convolutions on tensor cores).")
_WORKERS = typer.Option(None, "--workers", help="Input worker processes (0: load in the training "
                        "process). Batches are the same for any number.")
_SYNC_BN = typer.Option(None, "--sync-bn/--no-sync-bn", help="Under torchrun (anchor stage; every stage "
                        "of --method adashare|dag): BN statistics of the global batch instead of each "
                        "rank's slice.")
# Anchor optimizer.
_LR = typer.Option(None, "--lr", help="Anchor learning rate (preset default otherwise).")
_OPTIMIZER = typer.Option(None, "--optimizer", help="Anchor optimizer: adamw | adam | sgd.")
_SCHEDULE = typer.Option(None, "--schedule", help="Anchor LR schedule: cosine | step.")
_WEIGHT_DECAY = typer.Option(None, "--weight-decay", help="Anchor weight decay.")
# Branching regularizer (stage 1).
_TAU = typer.Option(None, "--tau", help="Active-task threshold τ (default 0.6/N).")
_LAMBDA_A = typer.Option(None, "--lambda-a", help="Weight λ_A of the active loss.")
_LAMBDA_I = typer.Option(None, "--lambda-i", help="Weight λ_I of the inactive loss.")
_NO_INACTIVE = typer.Option(False, "--no-inactive-loss", help="Ablation: drop the inactive loss.")
_NO_LAYER_W = typer.Option(False, "--no-layer-weighting", help="Ablation: weight 1 for every layer.")
_NO_AFFINITY = typer.Option(False, "--no-affinity", help="Ablation: task affinity A(i, j) = 1.")
_NO_DICHOTOMY = typer.Option(False, "--no-dichotomy", help="Ablation: treat every task as active.")
_INACTIVE = typer.Option(False, "--inactive-loss", help="Use L_inactive even where the preset turns it off "
                         "(the synth presets, issue 22).")
_IDENTITY_PRIOR = typer.Option(None, "--identity-prior", help="Stage 1: logit margin on each node's own stream "
                               "at the start, so the edge hypernet starts from the anchor (0 = off, the paper's "
                               "plain heads; synth presets 8, others 4; issue 22).")
_PRIOR_LEARNABLE = typer.Option(None, "--identity-prior-learnable/--identity-prior-fixed",
                                help="Stage 1: let the identity prior learn, or keep it fixed (synth presets: fixed).")
_PRIOR_C_SLOPE = typer.Option(None, "--identity-prior-c-slope", help="Stage 1: the identity prior falls with c, "
                              "identity prior x (1 - slope*c): 0 = constant, 1 = none left at c = 1 (synth presets 1; "
                              "issue 22).")
_C_ZERO_SHARE = typer.Option(None, "--c-zero-share", help="Stages 1 and 2: share of the sampled preferences drawn "
                             "at c = 0 exactly instead of c ~ U(0, 1) (0 = the paper's; synth presets 0.25; issue 22).")
_ACTIVE_READING = typer.Option(None, "--active-reading", help="Eq. 3's indices: printed (the paper as printed, "
                               "default) | child (dymu-rt's reading before issue 22).")
_INIT = typer.Option(None, "--init", help="How the anchor's streams start: independent | shared (a shared-encoder "
                     "multi-task net trained first, copied into every stream; the synth presets' default) | "
                     "pretrained:FILE (ImageNet ResNet-18/34 or MobileNetV2 weights in torchvision's or timm's "
                     "layout, safetensors or a torch state dict).")
_PRETRAIN_STEPS = typer.Option(None, "--pretrain-steps", help="Steps of the shared pre-training (--init shared).")
_L2SP = typer.Option(None, "--l2sp", help="Anchor fine-tune: L2-SP weight alpha pulling every stream toward the "
                     "shared initial weights, alpha/2 * ||theta - theta_0||^2 (0 = off; synth presets 0.003; issue 22).")


def _run(stages: str, preset, out, data, seed, n_train, n_val, save_every, quiet, overrides: dict,
         flags: Optional[dict] = None, setup: Optional[dict] = None, method: str = "dymu",
         flow: Optional[int] = None) -> None:
    setup = dict(setup or {})
    lib.set_threads(setup.pop("threads", None))
    cfg = lib.run_training(out, stages, preset, data, overrides, seed=seed, n_train=n_train, n_val=n_val,
                           progress=not quiet, save_every=save_every, flags=flags, method=method, flow=flow,
                           **(setup or {}))
    if _is_main_rank():
        _summary(cfg)


def _is_main_rank() -> bool:
    """False on torchrun ranks > 0 (only rank 0 prints the summary)."""
    return os.environ.get("RANK", "0") == "0"


def _setup(device, precision, channels_last, workers, sync_bn=None, threads=None) -> dict:
    return {"device": device, "precision": precision, "channels_last": channels_last, "workers": workers,
            "sync_bn": sync_bn, "threads": threads}


def _summary(cfg: dict) -> None:
    anchor = cfg["stages"].get("anchor", {})
    if anchor.get("done") and "val" in anchor:
        table = Table(title="anchor net (single-task streams) on the validation split")
        table.add_column("task")
        table.add_column("metric")
        table.add_column("anchor", justify="right")
        table.add_column("trivial baseline", justify="right")
        for task, metrics in anchor["val"].items():
            base = anchor.get("baselines", {}).get(task, {})
            for k, v in metrics.items():
                table.add_row(task, k, f"{v:.4f}", f"{base.get(k, float('nan')):.4f}")
        console.print(table)
    final = cfg["stages"].get("final", {})
    if final.get("done") and "val" in final:
        table = Table(title=f"{cfg.get('method')} (static architecture {final.get('topology')}) on the validation split")
        for col in ("task", "metric", "value"):
            table.add_column(col, justify="right" if col == "value" else "left")
        for task, metrics in final["val"].items():
            for k, v in metrics.items():
                table.add_row(task, k, f"{v:.4f}")
        console.print(table)
    done = [s for s, v in cfg["stages"].items() if v.get("done")]
    console.print(f"stages done: {', '.join(done) or 'none'}")


@app.callback()
def train_all(
    ctx: typer.Context,
    preset: Optional[str] = _PRESET,
    method: str = typer.Option("dymu", "--method", help="dymu (controllable, the default) | adashare | dag "
                               "(static architectures; stage lengths: --anchor-steps warm-up, --edge-steps "
                               "search, --weight-steps retrain / fine-tune)."),
    flow: Optional[int] = typer.Option(None, "--flow", help="--method dag: the flow constant M (edges only "
                                       "where j - i <= M; default 3)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created, or resumed)."),
    data: Optional[str] = _DATA,
    seed: Optional[int] = _SEED,
    anchor_steps: Optional[int] = typer.Option(None, help="Override the preset's anchor steps."),
    edge_steps: Optional[int] = typer.Option(None, help="Override stage-1 (edge hypernet) steps."),
    weight_steps: Optional[int] = typer.Option(None, help="Override stage-2 (weight hypernet) steps."),
    batch: Optional[int] = typer.Option(None, help="Override the batch size of every stage."),
    n_train: Optional[int] = _N_TRAIN,
    n_val: Optional[int] = _N_VAL,
    save_every: int = _SAVE_EVERY,
    lr: Optional[float] = _LR,
    optimizer: Optional[str] = _OPTIMIZER,
    schedule: Optional[str] = _SCHEDULE,
    weight_decay: Optional[float] = _WEIGHT_DECAY,
    tau: Optional[float] = _TAU,
    lambda_a: Optional[float] = _LAMBDA_A,
    lambda_i: Optional[float] = _LAMBDA_I,
    no_inactive_loss: bool = _NO_INACTIVE,
    no_layer_weighting: bool = _NO_LAYER_W,
    no_affinity: bool = _NO_AFFINITY,
    no_dichotomy: bool = _NO_DICHOTOMY,
    active_reading: Optional[str] = _ACTIVE_READING,
    inactive_loss: bool = _INACTIVE,
    identity_prior: Optional[float] = _IDENTITY_PRIOR,
    identity_prior_learnable: Optional[bool] = _PRIOR_LEARNABLE,
    identity_prior_c_slope: Optional[float] = _PRIOR_C_SLOPE,
    c_zero_share: Optional[float] = _C_ZERO_SHARE,
    init: Optional[str] = _INIT,
    pretrain_steps: Optional[int] = _PRETRAIN_STEPS,
    l2sp: Optional[float] = _L2SP,
    quiet: bool = _QUIET,
    device: Optional[str] = _DEVICE,
    precision: Optional[str] = _PRECISION,
    channels_last: Optional[bool] = _CHANNELS_LAST,
    workers: Optional[int] = _WORKERS,
    sync_bn: Optional[bool] = _SYNC_BN,
    threads: Optional[int] = _THREADS,
) -> None:
    """Train all stages: anchor net, then edge hypernet (stage 1), then weight hypernet (stage 2).

    Resumable: re-run the same command after an interruption. Settings (seed, sample
    counts, optimizer, regularizer) are saved in the run and reused on resume.
    """
    if ctx.invoked_subcommand is not None:
        return

    if out is None:
        raise ValidationError("missing option --out (the run directory)")
    overrides = {**lib.anchor_overrides(anchor_steps, batch, lr, optimizer, schedule, weight_decay, init,
                                        pretrain_steps, l2sp),
                 **lib.regularizer_overrides(tau, lambda_a, lambda_i, no_inactive_loss, no_layer_weighting,
                                              no_affinity, no_dichotomy, active_reading, inactive_loss),
                 **lib.edge_overrides(identity_prior, identity_prior_learnable, identity_prior_c_slope, c_zero_share),
                 "edge_steps": edge_steps, "weight_steps": weight_steps, "controller_batch": batch}
    _run("all", preset, out, data, seed, n_train, n_val, save_every, quiet, overrides,
         setup=_setup(device, precision, channels_last, workers, sync_bn, threads), method=method.lower(), flow=flow)


@app.command("anchor")
def anchor(
    preset: Optional[str] = _PRESET, out: Path = _OUT, data: Optional[str] = _DATA,
    seed: Optional[int] = _SEED, steps: Optional[int] = typer.Option(None, "--steps", help="Anchor steps."),
    batch: Optional[int] = _BATCH, n_train: Optional[int] = _N_TRAIN, n_val: Optional[int] = _N_VAL,
    save_every: int = _SAVE_EVERY, lr: Optional[float] = _LR, optimizer: Optional[str] = _OPTIMIZER,
    schedule: Optional[str] = _SCHEDULE, weight_decay: Optional[float] = _WEIGHT_DECAY,
    init: Optional[str] = _INIT, pretrain_steps: Optional[int] = _PRETRAIN_STEPS, l2sp: Optional[float] = _L2SP,
    quiet: bool = _QUIET, device: Optional[str] = _DEVICE, precision: Optional[str] = _PRECISION,
    channels_last: Optional[bool] = _CHANNELS_LAST, workers: Optional[int] = _WORKERS,
    sync_bn: Optional[bool] = _SYNC_BN, threads: Optional[int] = _THREADS,
) -> None:
    """Train each anchor stream on its own task."""
    _run("anchor", preset, out, data, seed, n_train, n_val, save_every, quiet,
         lib.anchor_overrides(steps, batch, lr, optimizer, schedule, weight_decay, init, pretrain_steps, l2sp),
         {"anchor_steps": "--steps"},
         setup=_setup(device, precision, channels_last, workers, sync_bn, threads))


@app.command("controller")
def controller(
    out: Path = _OUT, seed: Optional[int] = _SEED,
    edge_steps: Optional[int] = typer.Option(None, "--edge-steps", help="Stage-1 steps."),
    weight_steps: Optional[int] = typer.Option(None, "--weight-steps", help="Stage-2 steps."),
    batch: Optional[int] = _BATCH, n_train: Optional[int] = _N_TRAIN, n_val: Optional[int] = _N_VAL,
    save_every: int = _SAVE_EVERY, tau: Optional[float] = _TAU, lambda_a: Optional[float] = _LAMBDA_A,
    lambda_i: Optional[float] = _LAMBDA_I, no_inactive_loss: bool = _NO_INACTIVE,
    no_layer_weighting: bool = _NO_LAYER_W, no_affinity: bool = _NO_AFFINITY,
    no_dichotomy: bool = _NO_DICHOTOMY, active_reading: Optional[str] = _ACTIVE_READING,
    inactive_loss: bool = _INACTIVE, identity_prior: Optional[float] = _IDENTITY_PRIOR,
    identity_prior_learnable: Optional[bool] = _PRIOR_LEARNABLE,
    identity_prior_c_slope: Optional[float] = _PRIOR_C_SLOPE, c_zero_share: Optional[float] = _C_ZERO_SHARE,
    quiet: bool = _QUIET,
    device: Optional[str] = _DEVICE, precision: Optional[str] = _PRECISION,
    channels_last: Optional[bool] = _CHANNELS_LAST, workers: Optional[int] = _WORKERS,
    threads: Optional[int] = _THREADS,
) -> None:
    """Train the edge and weight hypernets (stages 1, 2)."""
    overrides = {**lib.regularizer_overrides(tau, lambda_a, lambda_i, no_inactive_loss, no_layer_weighting,
                                              no_affinity, no_dichotomy, active_reading, inactive_loss),
                 **lib.edge_overrides(identity_prior, identity_prior_learnable, identity_prior_c_slope, c_zero_share),
                 "edge_steps": edge_steps, "weight_steps": weight_steps, "controller_batch": batch}
    _run("controller", None, out, None, seed, n_train, n_val, save_every, quiet, overrides,
         setup=_setup(device, precision, channels_last, workers, threads=threads))


@app.command("phn-bn")
def phn_bn(
    out: Path = _OUT, seed: Optional[int] = _SEED, steps: Optional[int] = typer.Option(
        None, "--steps", help="Training steps (default: the preset's weight-hypernet steps)."),
    n_train: Optional[int] = _N_TRAIN, quiet: bool = _QUIET,
    device: Optional[str] = _DEVICE, precision: Optional[str] = _PRECISION,
    channels_last: Optional[bool] = _CHANNELS_LAST, workers: Optional[int] = _WORKERS,
    threads: Optional[int] = _THREADS,
) -> None:
    """Train the PHN-BN baseline (BN from a hypernet of r)."""
    _run("phn-bn", None, out, None, seed, n_train, None, 100, quiet, {"phn_steps": steps},
         setup=_setup(device, precision, channels_last, workers, threads=threads))
