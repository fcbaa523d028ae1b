"""``dymu-rt check``: every backend/precision of a bundle against its FP32 reference; exit 1 on a violation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.core.limits import check_threads


def check_command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `dymu-rt build`."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Also check this device profile's backend and "
                                          "precision (e.g. a TensorRT FP16/INT8 profile); skipped with the "
                                          "reason when it cannot run here."),
    points: int = typer.Option(3, "--points", help="Grid points to sample (one per topology first)."),
    scenes: int = typer.Option(4, "--scenes", help="Labelled procedural validation scenes per point."),
    atol: Optional[float] = typer.Option(None, "--atol", help="Absolute tolerance per output element "
                                         "(default per precision: fp32 1e-3, fp16 0.1, int8 1.0)."),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="Relative tolerance per output element "
                                         "(same defaults); an element passes when within either."),
    threads: int = typer.Option(0, "--threads", help="ONNX Runtime threads (0 = all cores)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation scenes."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compare each available backend/precision with the FP32 reference per task; exit 1 on a violation."""
    check_threads(threads)

    report = lib.check_bundle(bundle, profile=profile, points=points, scenes=scenes, atol=atol, rtol=rtol,
                              seed=seed, threads=threads, progress=not as_json)
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)
    if not report.passed:
        raise typer.Exit(1)


def _print(report) -> None:
    tab = Table(title=f"check {report.bundle} ({report.scenes} labelled scenes per point, {report.comparator})",
                caption="max abs/rel: largest element-wise difference to the FP32 reference (ORT, folded "
                        "weights); metric: contender minus reference on the labels (limit in brackets).")
    for col in ("contender", "r; c", "task", "max abs", "max rel", "metric change", "ok"):
        tab.add_column(col, justify="left" if col in ("contender", "r; c", "task", "metric change") else "right")
    tols = {}
    for res in report.results:
        tols[res.contender] = (res.atol, res.rtol)
        pt = ",".join(f"{v:.2g}" for v in res.point["r"]) + ("; static" if res.point["c"] is None
                                                              else f"; {res.point['c']:g}")
        for o in res.outputs:
            m = res.metrics.get(o.task, {})
            ok = o.passed and m.get("passed", True)
            tab.add_row(res.contender, pt, o.task, f"{o.max_abs:.2g}", f"{o.max_rel:.2g}",
                        f"{m.get('change', 0.0):+.3f} {m.get('metric', '')} ({m.get('limit', '')})",
                        "yes" if ok else "[bold red]NO[/]")
    console.print(tab)
    for name, (a, r) in tols.items():
        console.print(f"{name}: tolerance atol {a:g}, rtol {r:g}")
    for name, why in report.skipped.items():
        console.print(f"skipped {name}: {why}")
    console.print("[bold green]passed[/]" if report.passed else "[bold red]FAILED: violations above[/]")
