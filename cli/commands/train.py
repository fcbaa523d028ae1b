"""``dymu-rt train``: the anchor net and the hypernets (all stages, or one group)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import console

app = typer.Typer(no_args_is_help=False, invoke_without_command=True)

_PRESET = typer.Option(None, "--preset", help="Preset name (see `dymu-rt inspect PRESET`); "
                       "optional when resuming an existing --out.")
_OUT = typer.Option(..., "--out", help="Run directory (created, or resumed if it exists).")
_DATA = typer.Option(None, "--data", help="'synth' (procedural scenes, default) or a dataset folder "
                     "in the NYU-v2 / PASCAL-Context / CIFAR-100 layout.")


def _run(stages: str, preset, out, data, seed, anchor_steps, edge_steps, weight_steps, batch, n_train,
         n_val, save_every, quiet) -> None:
    from dymu_rt.train.pipeline import open_run, train

    overrides = {"anchor_steps": anchor_steps, "edge_steps": edge_steps, "weight_steps": weight_steps,
                 "anchor_batch": batch, "controller_batch": batch}
    for k, v in overrides.items():
        if v is not None and v < 1:
            raise typer.BadParameter(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    run = open_run(out, preset, data, overrides)
    cfg = train(run, stages, seed=seed, n_train=n_train, n_val=n_val, progress=not quiet,
                save_every=save_every)
    _summary(cfg)


def _summary(cfg: dict) -> None:
    from rich.table import Table

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
    done = [s for s, v in cfg["stages"].items() if v.get("done")]
    console.print(f"stages done: {', '.join(done) or 'none'}")


@app.callback()
def train_all(
    ctx: typer.Context,
    preset: Optional[str] = _PRESET,
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created, or resumed)."),
    data: Optional[str] = _DATA,
    seed: int = typer.Option(0, help="Random seed."),
    anchor_steps: Optional[int] = typer.Option(None, help="Override the preset's anchor steps."),
    edge_steps: Optional[int] = typer.Option(None, help="Override stage-1 (edge hypernet) steps."),
    weight_steps: Optional[int] = typer.Option(None, help="Override stage-2 (weight hypernet) steps."),
    batch: Optional[int] = typer.Option(None, help="Override the batch size of every stage."),
    n_train: Optional[int] = typer.Option(None, help="Number of procedural training scenes."),
    n_val: Optional[int] = typer.Option(None, help="Number of procedural validation scenes."),
    save_every: int = typer.Option(100, help="Save resumable state every N steps."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train all stages: anchor net, then edge hypernet (stage 1), then weight hypernet (stage 2).

    Resumable: re-run the same command after an interruption.
    """
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("missing option --out (the run directory)")
    _run("all", preset, out, data, seed, anchor_steps, edge_steps, weight_steps, batch, n_train, n_val,
         save_every, quiet)


@app.command("anchor")
def anchor(
    preset: Optional[str] = _PRESET, out: Path = _OUT, data: Optional[str] = _DATA,
    seed: int = typer.Option(0), steps: Optional[int] = typer.Option(None, help="Anchor steps."),
    batch: Optional[int] = typer.Option(None), n_train: Optional[int] = typer.Option(None),
    n_val: Optional[int] = typer.Option(None), save_every: int = typer.Option(100),
    quiet: bool = typer.Option(False),
) -> None:
    """Train each stream of the anchor net on its own task."""
    _run("anchor", preset, out, data, seed, steps, None, None, batch, n_train, n_val, save_every, quiet)


@app.command("controller")
def controller(
    out: Path = _OUT, seed: int = typer.Option(0),
    edge_steps: Optional[int] = typer.Option(None), weight_steps: Optional[int] = typer.Option(None),
    batch: Optional[int] = typer.Option(None), n_train: Optional[int] = typer.Option(None),
    n_val: Optional[int] = typer.Option(None), save_every: int = typer.Option(100),
    quiet: bool = typer.Option(False),
) -> None:
    """Train the edge hypernet (stage 1) and the weight hypernet (stage 2) of a run."""
    _run("controller", None, out, None, seed, None, edge_steps, weight_steps, batch, n_train, n_val,
         save_every, quiet)


@app.command("phn-bn")
def phn_bn(
    out: Path = _OUT, seed: int = typer.Option(0), steps: Optional[int] = typer.Option(
        None, help="Training steps (default: the preset's weight-hypernet steps)."),
    n_train: Optional[int] = typer.Option(None), quiet: bool = typer.Option(False),
) -> None:
    """Train the PHN-BN baseline (shared backbone, BN from a hypernet of r) for comparison."""
    _run("phn-bn", None, out, None, seed, None, None, steps, None, n_train, None, 100, quiet)
