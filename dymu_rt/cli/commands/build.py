"""``dymu-rt build``: preference grid -> one folded ONNX graph per topology -> bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.backends.registry import backend_names, DEFAULT_BACKEND
from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json


def build_command(
    run_dir: Path = typer.Argument(Path("runs/synth-nyu"), help="Run directory written by `dymu-rt train`."),
    grid: str = typer.Option("0.1", "--grid", help="Step of the task-preference grid r (e.g. 0.1)."),
    c_grid: Optional[str] = typer.Option(None, "--c-grid", help="Step of the resource preference c "
                                         "(default: the --grid step)."),
    backend: str = typer.Option(DEFAULT_BACKEND, "--backend", help=" | ".join(backend_names()) + "."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Device profile name or TOML path."),
    out: Optional[Path] = typer.Option(None, "--out", help="Bundle directory (default: RUN_DIR/bundle)."),
    workers: int = typer.Option(1, "--workers", help="Processes exporting topologies in parallel."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Enumerate the grid, deduplicate topologies and export one graph per topology (resumable)."""
    out = out or run_dir / "bundle"
    summary = lib.build_bundle(run_dir, out, step=grid, c_step=c_grid, backend=backend, profile=profile,
                               workers=workers, progress=not as_json)
    if as_json:
        print_json(summary)
        return

    t = Table(title=f"bundle {out}" + (" (already complete: nothing to do)" if summary["noop"] else ""))
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("grid points", str(summary["points"]))
    t.add_row("topologies", f"{summary['topologies']} ({summary['built']} exported now, "
                            f"{summary['reused']} reused)")
    t.add_row("bundle size", f"{summary['bundle_bytes'] / 2**20:.2f} MiB")
    t.add_row("time", f"{summary['seconds']:.1f} s")
    t.add_row("GMACs range (conv+linear MACs)", f"{summary['gmacs_min']:.4f} - {summary['gmacs_max']:.4f}")
    console.print(t)
