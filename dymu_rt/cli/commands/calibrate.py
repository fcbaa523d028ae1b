"""``dymu-rt calibrate``: INT8 Q/DQ graphs for every topology of a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json


def calibrate_command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `dymu-rt build` (the shipped "
                                  "default bundle is read-only: calibrate a copy)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of calibration images (PNG/JPEG/...)."),
    synth: Optional[int] = typer.Option(None, "--synth", help="Calibrate on N procedural scenes instead."),
    method: str = typer.Option("minmax", "--method", help="minmax | entropy | percentile."),
    profile: Optional[str] = typer.Option(None, "--profile", help="INT8 device profile the graphs are for."),
    seed: int = typer.Option(0, "--seed", help="Seed of the procedural scenes (--synth)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Quantize every topology graph to INT8 (Q/DQ) from a calibration set; cached per topology."""
    summary = lib.calibrate_bundle(bundle, images=images, synth=synth, method=method, profile=profile,
                                   seed=seed, progress=not as_json)
    if as_json:
        print_json(summary)
        return
    cal = summary["calibration"]
    src = cal.get("path") or f"{cal.get('n')} procedural scenes (seed {cal.get('seed')})"
    console.print(f"INT8 ({summary['method']}) from {src}: {summary['topologies']} topologies, "
                  f"{summary['quantized']} quantized now, {summary['reused']} from the cache "
                  f"({bundle}/calibration/)")
