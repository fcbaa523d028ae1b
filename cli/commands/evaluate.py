"""``dymu-rt eval``: HV, uniformity and cost of a trained controller, with baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dymu_rt.cli.common import console, print_json


def eval_command(
    run: Path = typer.Argument(..., help="Run directory written by `dymu-rt train`."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Evaluate a preference grid with this "
                                       "step (e.g. 0.25) instead of 20 sampled r x c in {0, 1}."),
    c_grid: Optional[str] = typer.Option(None, "--c-grid", help="With --grid: step of the resource "
                                         "preference c (default: the --grid step)."),
    n_r: int = typer.Option(20, "--n-r", help="Number of sampled task preferences r (>= 1)."),
    c: Optional[str] = typer.Option(None, "--c", help="Resource preferences of the sampled r, comma "
                                    "separated (default 0,1; with --grid use --c-grid)."),
    n_val: Optional[int] = typer.Option(None, "--n-val", help="Validation scenes (procedural data, >= 1)."),
    n_cost: int = typer.Option(1000, "--n-cost", help="Preferences averaged for params/GFLOPs (>= 1)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="HV reference point, one loss "
                                            "per task, comma separated (default: the preset's, else "
                                            "1.1 x worst loss)."),
    tree: Optional[list[str]] = typer.Option(None, "--tree", help="Draw the predicted tree of this "
                                             "preference \"R;C\", e.g. \"0.6,0.2,0.2;0.5\" "
                                             "(repeatable; default: uniform and skewed r at c = 0, 1)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Folder for PNG plots "
                                         "(default: RUN/eval)."),
    seed: int = typer.Option(0, help="Seed of the sampled preferences."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a trained controller over preferences (HV, uniformity, params, GFLOPs)."""
    from dymu_rt.evaluate.report import evaluate_run

    report = evaluate_run(run, grid=grid, c_grid=c_grid, n_r=n_r, c=c, n_val=n_val, n_cost=n_cost,
                          reference=reference, trees=tree or [], plots=plots, seed=seed, progress=not as_json)
    out_dir = plots or Path(run) / "eval"
    if as_json:
        print_json({k: v for k, v in report.items() if k != "preferences"})
        return
    _print(report)
    console.print(f"report: {out_dir / 'report.json'}; plots: {', '.join(report['plots'])}")


def _print(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"controller evaluation ({report['preset']}, {report['n_val']} val scenes; "
                    "GMACs = the paper's GFLOPs, fvcore convention)")
    for col in ("method", "c", "HV", "uniformity", "params (M)", "GMACs"):
        t.add_column(col, justify="right" if col != "method" else "left")
    for row in report["table"]:
        t.add_row(row["method"], "-" if row["c"] is None else f"{row['c']:g}", f"{row['hv']:.4f}",
                  f"{row['uniformity']:.4f}", f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}")
    console.print(t)
    console.print(f"HV reference point: {', '.join(f'{v:.4g}' for v in report['reference_point'])} "
                  f"({report['reference_source']})")
    outside = sum(row.get("outside_reference", 0) for row in report["table"])
    if outside:
        console.print(f"[yellow]{outside} loss vector(s) lie outside the reference box and add nothing "
                      "to HV[/yellow]")
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
    for tr in report.get("trees", []):
        console.print(f"tree r = ({', '.join(f'{v:g}' for v in tr['r'])}), c = {tr['c']:g}: topology "
                      f"{tr['topology']}, {tr['params'] / 1e6:.3f} M params, {tr['gmacs']:.4f} GMACs")
    console.print(f"controller params: edge hypernet {cp['edge_hypernet']:,}, weight hypernet "
                  f"{cp['weight_hypernet']:,}; distinct trees evaluated: {report['distinct_trees']}")
