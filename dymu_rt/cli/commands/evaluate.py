"""``dymu-rt eval``: HV, uniformity and cost of a trained controller, with baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json


def eval_command(
    run: Path = typer.Argument(..., help="Run directory written by `dymu-rt train`."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Evaluate a preference grid with this "
                                       "step (e.g. 0.25) instead of 20 sampled r x c in {0, 1}."),
    c_grid: Optional[str] = typer.Option(None, "--c-grid", help="With --grid: step of the resource "
                                         "preference c (default: the --grid step)."),
    n_r: int = typer.Option(20, "--n-r", help="Number of sampled task preferences r (>= 1)."),
    eta: Optional[float] = typer.Option(None, "--eta", help="Sample r ~ Dir(eta) (default 1: uniform on the "
                                        "simplex, the paper's protocol; 0.2 = the training law)."),
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
    single_task: Optional[Path] = typer.Option(None, "--single-task", help="AdaShare/DAG runs: a DYMU run of "
                                               "the same preset whose anchor (the single-task nets) is the "
                                               "reference of Δ_T (a DYMU run uses its own anchor)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Evaluate a trained controller over preferences (HV, uniformity, params, GFLOPs, Δ_T);
    an AdaShare / DAG run: its one architecture (metrics, HV, uniformity, cost, Δ_T)."""
    method = lib.method_for(run)
    if method.bundle == "static":
        report = method.evaluate(run, n_val=n_val, reference=reference, seed=seed, single_task=single_task,
                                 plots=plots, grid=grid, c_grid=c_grid, c=c, trees=tree or [],
                                 progress=not as_json)
        _print_static(report, as_json, plots or Path(run) / "eval")
        return
    report = lib.evaluate_run(run, grid=grid, c_grid=c_grid, n_r=n_r, c=c, n_val=n_val, n_cost=n_cost,
                              reference=reference, trees=tree or [], plots=plots, seed=seed, progress=not as_json,
                              single_task=single_task, eta=eta)
    out_dir = plots or Path(run) / "eval"
    if as_json:
        print_json({k: v for k, v in report.items() if k != "preferences"})
        return
    _print(report)
    console.print(f"report: {out_dir / 'report.json'}; plots: {', '.join(report['plots'])}")


def _print_static(report: dict, as_json: bool, out_dir: Path) -> None:
    """An AdaShare / DAG run's evaluation (one architecture)."""
    if as_json:
        print_json(report)
        return

    row = report["table"][0]
    t = Table(title=f"{row['method']} ({report['preset']}, {report['n_val']} val scenes, topology "
                    f"{report['topology']})")
    for col in ("task", "metric", "value", "Δ_T_i %"):
        t.add_column(col, justify="left" if col in ("task", "metric") else "right")
    dt = report["delta_t"]
    for task, metrics in report["metrics"].items():
        for i, (k, v) in enumerate(metrics.items()):
            t.add_row(task if i == 0 else "", k, f"{v:.4f}",
                      f"{dt['per_task'][task]:+.2f}" if dt is not None and i == 0 else "")
    console.print(t)
    console.print(f"Δ_T = {dt['mean']:+.2f} % vs single-task ({dt['single_task_run']})" if dt is not None
                  else f"Δ_T: n/a ({report['delta_t_note']})")
    console.print(f"HV {row['hv']:.4f} (reference {', '.join(f'{v:.4g}' for v in report['reference_point'])}, "
                  f"{report['reference_source']}), uniformity {row['uniformity']:.4f}, "
                  f"{row['params'] / 1e6:.3f} M params, {row['gmacs']:.4f} GMACs")
    console.print(f"report: {out_dir / 'report.json'}")


def _print(report: dict) -> None:
    t = Table(title=f"controller evaluation ({report['preset']}, {report['n_val']} val scenes; "
                    "GMACs = conv+linear MACs; GFLOPs (paper) = fvcore's count)")
    for col in ("method", "c", "HV", "uniformity", "params (M)", "GMACs", "GFLOPs (paper)"):
        t.add_column(col, justify="right" if col != "method" else "left", no_wrap=col == "method")
    for row in report["table"]:
        gp = row.get("gflops_paper")
        t.add_row(row["method"], "-" if row["c"] is None else f"{row['c']:g}", f"{row['hv']:.4f}",
                  f"{row['uniformity']:.4f}", f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}",
                  "-" if gp is None else f"{gp:.4f}")
    console.print(t)
    dt = report.get("delta_t")
    if dt:
        console.print("Δ_T vs single-task at uniform r (%, Choi & Im eqs. 10-11): " + ", ".join(
            f"c={c}: {v['mean']:+.2f}" for c, v in dt["by_c"].items()) +
            (f"; PHN-BN: {dt['phn_bn']['mean']:+.2f}" if "phn_bn" in dt else ""))
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
    t2.add_column("mean GMACs, r ~ Dir(0.2)", justify="right")
    t2.add_column("skewed r (0.85 on one task)", justify="right")
    t2.add_column("uniform r", justify="right")
    for c, v in ctl["mean_params_by_c"].items():
        sv = ctl["skewed_vs_uniform"][c]
        gm = ctl.get("mean_gmacs_by_c", {}).get(c)
        t2.add_row(c, f"{v / 1e6:.3f}", "-" if gm is None else f"{gm:.4f}",
                   f"{sv['skewed_mean_params'] / 1e6:.3f}", f"{sv['uniform_params'] / 1e6:.3f}")
    console.print(t2)
    cp = report["controller_params"]
    for tr in report.get("trees", []):
        console.print(f"tree r = ({', '.join(f'{v:g}' for v in tr['r'])}), c = {tr['c']:g}: topology "
                      f"{tr['topology']}, {tr['params'] / 1e6:.3f} M params, {tr['gmacs']:.4f} GMACs")
    console.print(f"controller params: edge hypernet {cp['edge_hypernet']:,}, weight hypernet "
                  f"{cp['weight_hypernet']:,}, both {cp['edge_hypernet'] + cp['weight_hypernet']:,}; "
                  f"distinct trees evaluated: {report['distinct_trees']}")
