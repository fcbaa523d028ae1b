"""``dymu-rt profile``: time every topology of a bundle on this device; store the table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.utils.progress import make_progress


def profile_command(
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Bundle directory (default: the installed one)."),
    profile: str = typer.Option("x86-64-cpu", "--profile", help="Device profile name or TOML path; its "
                                "backend key picks the backend (e.g. jetson-orin-nano -> TensorRT)."),
    iters: int = typer.Option(50, "--iters", help="Timed runs per topology."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs per topology first."),
    batch: int = typer.Option(1, "--batch", help="Batch size timed (stored with the table; "
                              "`run --latency-budget` uses batch-1 tables only)."),
    rebuild_engines: bool = typer.Option(False, "--rebuild-engines", help="Discard the engines cached for "
                                         "this profile (e.g. built on another machine) and rebuild them."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON."),
) -> None:
    """Warm up and time every topology; store the latency table in the bundle's manifest
    (for a read-only bundle such as the shipped one: in $XDG_CACHE_HOME/dymu-rt/latency/,
    keyed by the bundle's checksum, the profile and the library versions).
    """
    rt = lib.Runtime.open(bundle or lib.default_bundle_path(), profile=profile, rebuild_engines=rebuild_engines)
    with make_progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("timing topologies", total=len(rt.manifest.topologies), info="")
        table = rt.profile_topologies(iters=iters, warmup=warmup, batch=batch,
                                      on_topology=lambda tid, row: bar.update(task, advance=1,
                                                                               info=f"{tid} {row['p50_ms']:.2f} ms"))
    rows = lib.profile_rows(rt.manifest, table)
    if as_json:
        print_json({"profile": rt.profile.name, "backend": rt.backend.name, "batch": batch, "iters": iters,
                    "stored_in": rt.latency_store, "topologies": rows})
        return

    tab = Table(title=f"{rt.profile.name}: {len(rows)} topologies, batch {batch}, {iters} runs each "
                      f"(stored in {rt.latency_store})",
                caption="GMACs = conv+linear multiply-adds / 1e9; GFLOPs and the achieved GFLOP/s count 2 FLOPs "
                        "per MAC (GFLOP/s at p50, per image x batch); load ms = switch to this topology uncached.")
    for col in ("topology", "points", "GMACs", "GFLOPs", "params (M)", "n", "mean ms", "std", "p50 ms", "p90 ms",
                "p99 ms", "load ms", "GFLOP/s"):
        tab.add_column(col, justify="left" if col == "topology" else "right", no_wrap=col == "topology")
    for row in rows:
        tab.add_row(row["topology"], str(row["n_points"]), f"{row['gmacs']:.4f}", f"{row['gflops']:.4f}",
                    f"{row['params'] / 1e6:.3f}",
                    str(row.get("count", "")), f"{row.get('mean_ms', float('nan')):.3f}",
                    f"{row.get('std_ms', float('nan')):.3f}",
                    f"{row['p50_ms']:.3f}", f"{row['p90_ms']:.3f}", f"{row['p99_ms']:.3f}",
                    f"{row.get('load_ms', float('nan')):.1f}",
                    f"{row['achieved_gflop_s']:.2f}")
    console.print(tab)
