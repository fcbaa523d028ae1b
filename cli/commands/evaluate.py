"""``dymu-rt eval``: HV, uniformity and cost of a trained controller, with baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import console, print_json


def eval_command(
    run: Path = typer.Argument(..., help="Run directory written by `dymu-rt train`."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Evaluate a preference grid with this "
                                       "step (e.g. 0.25) instead of 20 sampled r x c in {0, 1}."),
    n_r: int = typer.Option(20, "--n-r", help="Number of sampled task preferences r."),
    c: str = typer.Option("0,1", "--c", help="Resource preferences to evaluate, comma separated."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation scenes (procedural data)."),
    n_cost: int = typer.Option(1000, "--n-cost", help="Preferences averaged for params/GFLOPs."),
    reference: Optional[str] = typer.Option(None, "--reference", help="HV reference point, one loss "
                                            "per task, comma separated (default: 1.1 x worst loss)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for PNG plots "
                                         "(default: RUN/eval)."),
    seed: int = typer.Option(0, help="Seed of the sampled preferences."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a trained controller over preferences (HV, uniformity, params, GFLOPs)."""
    from dymu_rt.control.preference import parse_c
    from dymu_rt.errors import ValidationError
    from dymu_rt.evaluate.controller import evaluate_controller
    from dymu_rt.evaluate.report import write_eval_plots

    cs = [parse_c(v) for v in c.split(",") if v.strip()]
    if not cs:
        raise ValidationError(f"--c {c!r}: expected comma-separated values in [0, 1]")
    ref = None
    if reference is not None:
        try:
            ref = [float(v) for v in reference.split(",")]
        except ValueError:
            raise ValidationError(f"--reference {reference!r}: expected comma-separated numbers") from None
    report = evaluate_controller(run, mode="grid" if grid else "sampled", n_r=n_r, cs=cs, step=grid,
                                 n_val=n_val, n_cost=n_cost, seed=seed, reference=ref,
                                 progress=not as_json)
    if ref is not None and len(ref) != len(report["tasks"]):
        raise ValidationError(f"--reference has {len(ref)} values, expected one per task "
                              f"({len(report['tasks'])})")
    out_dir = plots or Path(run) / "eval"
    report["plots"] = write_eval_plots(run, report, out_dir)
    from dymu_rt.utils.io import atomic_write_json

    atomic_write_json(out_dir / "report.json", report)
    if as_json:
        print_json({k: v for k, v in report.items() if k != "preferences"})
        return
    _print(report)
    console.print(f"report: {out_dir / 'report.json'}; plots: {', '.join(report['plots'])}")


def _print(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"controller evaluation ({report['preset']}, {report['n_val']} val scenes; "
                    "GFLOPs = GMACs, fvcore convention)")
    for col in ("method", "c", "HV", "uniformity", "params (M)", "GFLOPs"):
        t.add_column(col, justify="right" if col != "method" else "left")
    for row in report["table"]:
        t.add_row(row["method"], "-" if row["c"] is None else f"{row['c']:g}", f"{row['hv']:.4f}",
                  f"{row['uniformity']:.4f}", f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}")
    console.print(t)
    ctl = report["controllability"]
    t2 = Table(title="controllability: mean params (M) of predicted trees")
    t2.add_column("c")
    t2.add_column("mean over r ~ Dir(0.2)", justify="right")
    t2.add_column("skewed r (0.85 on one task)", justify="right")
    t2.add_column("uniform r", justify="right")
    for c, v in ctl["mean_params_by_c"].items():
        sv = ctl["skewed_vs_uniform"][c]
        t2.add_row(c, f"{v / 1e6:.3f}", f"{sv['skewed_mean_params'] / 1e6:.3f}", f"{sv['uniform_params'] / 1e6:.3f}")
    console.print(t2)
    cp = report["controller_params"]
    console.print(f"controller params: edge hypernet {cp['edge_hypernet']:,}, weight hypernet "
                  f"{cp['weight_hypernet']:,}; distinct trees evaluated: {report['distinct_trees']}")
