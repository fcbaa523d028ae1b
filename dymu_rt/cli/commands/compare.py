"""``dymu-rt compare``: every method of one preset side by side (Δ_T, metrics, cost, latency)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.core.errors import ValidationError
from dymu_rt.core.io import atomic_write_json
from dymu_rt.core.limits import check_threads


def compare_command(
    runs: list[Path] = typer.Argument(..., help="One DYMU run (single-task, PHN-BN, DYMU c=0/1 come from it) "
                                      "and any AdaShare / DAG runs of the same preset."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for compare.json, compare.md and "
                                       "compare.png (default: DYMU_RUN/compare)."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation scenes (default: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation split."),
    threads: int = typer.Option(1, "--threads", help="CPU threads of the runtime that times "
                                "every row (and torch threads for the metrics)."),
    profile: str = typer.Option("x86-64-cpu", "--profile", help="Device profile every row is timed on (name or "
                                "TOML path; a CPU profile, e.g. x86-64-cpu-openvino); --threads replaces its threads."),
    rounds: int = typer.Option(10, "--rounds", help="Interleaved timing rounds."),
    iters: int = typer.Option(20, "--iters", help="Timed runs per method per round."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    retrain: bool = typer.Option(False, "--retrain", help="The paper's Δ_T (DYMU Table 5, A-1): also train each "
                                 "DYMU tree of uniform r (c = 0 and 1) again as a static net, build it as a static "
                                 "bundle and time it; its row follows the deployed tree's. Kept in the DYMU run: a "
                                 "finished retrain is reused, a killed one resumes."),
    retrain_steps: Optional[int] = typer.Option(None, "--retrain-steps", help="Steps of each retrain (default: "
                                                "the run's anchor steps; the paper does not say)."),
    retrain_init: Optional[str] = typer.Option(None, "--retrain-init", help="Where a retrained tree starts: anchor "
                                               "(the anchor net's weights, the paper's default) | base (the weights "
                                               "the anchor started from, the run's --init: the paper's †)."),
    device: Optional[str] = typer.Option(None, "--device", help="--retrain: auto | cpu | cuda | cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", help="--retrain: fp32 | bf16 | fp16."),
    channels_last: bool = typer.Option(False, "--channels-last", help="--retrain: NHWC activations."),
    workers: Optional[int] = typer.Option(None, "--workers", help="--retrain: input worker processes."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="--retrain: save resumable state every "
                                             "N steps (default 100)."),
) -> None:
    """Put single-task, PHN-BN, DYMU c=0/1, AdaShare and DAG runs of one preset side by side."""
    check_threads(threads, allow_zero=False)
    if n_val is not None and n_val < 1:
        raise ValidationError(f"--n-val {n_val}: expected an integer >= 1")
    setup = {k: v for k, v in (("device", device), ("precision", precision), ("channels_last", channels_last),
                               ("workers", workers)) if v is not None and v is not False}
    report = lib.compare_runs(runs, n_val=n_val, seed=seed, threads=threads, rounds=rounds, iters=iters,
                              progress=not as_json, profile=profile, retrain=retrain, retrain_steps=retrain_steps,
                              retrain_init=retrain_init, retrain_setup=setup, save_every=save_every)
    dymu = next(r for r in runs if lib.method_for(lib.RunDir(r)).bundle == "grid")
    out = out or Path(dymu) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    report["png"] = str(lib.plot_compare(report, out / "compare.png"))
    atomic_write_json(out / "compare.json", report)
    (out / "compare.md").write_text(lib.compare_markdown(report), encoding="utf-8")
    if as_json:
        print_json(report)
        return

    prim = report["primary"]
    t = Table(title=f"{report['preset']}: methods side by side ({report['n_val']} val scenes; latency: the "
                    f"dymu-rt runtime on each row's bundle, {report['latency_protocol']['profile']} "
                    f"({report['latency_protocol']['backend']}, {report['latency_protocol']['precision']}), "
                    f"{threads} thread(s), batch 1, median)",
              caption="binding: folded = DYMU grid bundle, the runtime's steady state (the preference's folded "
                      "engine, docs/runtime-tiers.md); static = one graph with BN folded, nothing bound")
    beside = ["retrained Δ_T %"] if retrain else []
    for col in ["method", "Δ_T %"] + beside + [f"{k} {v}" for k, v in prim.items()] + \
            ["params (M)", "GMACs", "binding", "p50 ms"]:
        t.add_column(col, justify="left" if col == "method" else "right")
    for row in report["rows"]:
        t.add_row(row["label"], f"{row['delta_t']['mean']:+.2f}",
                  *([f"{row['retrained_delta_t']:+.2f}" if "retrained_delta_t" in row else ""] if retrain else []),
                  *[f"{row['metrics'][k][v]:.3f}" for k, v in prim.items()],
                  f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}", row["binding"],
                  f"{row['latency_ms']['p50']:.3f}")
    console.print(t)
    console.print(f"written: {out / 'compare.json'}, {out / 'compare.md'}, {out / 'compare.png'}")
