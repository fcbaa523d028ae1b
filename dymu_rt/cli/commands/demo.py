"""``dymu-rt demo``: the whole pipeline on procedural scenes, with a summary at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console


def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for everything the demo writes."),
    scale: float = typer.Option(1.0, "--scale", help="Shrink every step count and dataset size by this "
                                "factor (0 < scale <= 1; e.g. 0.05 for a smoke run). Same code path."),
    seed: int = typer.Option(0, help="Random seed."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    threads: Optional[int] = typer.Option(None, "--threads", help="PyTorch threads (default: all cores). "
                                          "Fewer leave room for other work on the machine."),
) -> None:
    """Run the whole pipeline on procedural scenes in minutes: render, train, evaluate,
    build a grid, profile, run images at several preferences; prints which preference ran
    which tree at what cost and accuracy, and writes pictures (side_by_side.png).
    """
    lib.set_threads(threads)

    s = lib.run_demo(out, scale=scale, seed=seed, progress=not quiet, log=console.print)
    t = Table(title="dymu-rt demo: summary")
    t.add_column("step")
    t.add_column("seconds", justify="right")
    for k, v in s["seconds"].items():
        t.add_row(k, f"{v:.1f}")
    console.print(t)
    a = Table(title="anchor net on validation scenes vs a trivial constant predictor")
    for col in ("task", "metric", "anchor", "trivial"):
        a.add_column(col, justify="left" if col in ("task", "metric") else "right")
    primary = {"semseg": "miou", "normals": "mean", "depth": "abs_err"}
    for task, metrics in (s["anchor_val"] or {}).items():
        k = primary.get(task, next(iter(metrics)))
        a.add_row(task, k, f"{metrics[k]:.3f}", f"{s['anchor_baselines'][task][k]:.3f}")
    console.print(a)
    e = Table(title="controller (GMACs = conv+linear multiply-adds / 1e9)")
    for col in ("method", "c", "HV", "uniformity", "params (M)", "GMACs"):
        e.add_column(col, justify="left" if col == "method" else "right")
    for row in s["eval_table"]:
        e.add_row(row["method"], "-" if row["c"] is None else f"{row['c']:g}", f"{row['hv']:.4f}",
                  f"{row['uniformity']:.3f}", f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}")
    console.print(e)
    b = s["bundle"]
    console.print(f"bundle: {b['points']} grid points -> {b['topologies']} distinct trees, "
                  f"{b['bundle_bytes'] / 2**20:.2f} MiB, GMACs {b['gmacs_min']:.4f}..{b['gmacs_max']:.4f}")
    runs = s["runs"]
    r = Table(title="which preference ran which tree, at what cost and accuracy (ONNX Runtime, this machine; "
                    f"accuracy on {s['settings']['n_val_scenes']} labelled validation scenes)")
    for col in ("task preference r", "c", "tree", "GMACs", "params (M)", "p50 ms"):
        r.add_column(col, justify="left" if col in ("task preference r", "tree") else "right", no_wrap=True)
    metric_cols = [(task, a["label"], a["higher_is_better"]) for task, a in runs[0]["accuracy"].items()] if runs else []
    for task, label, higher in metric_cols:
        r.add_column(f"{task}: {label}, {'higher' if higher else 'lower'} is better", justify="right")
    for row in runs:
        lat = "-" if row["latency_ms_p50"] is None else f"{row['latency_ms_p50']:.2f}"
        r.add_row(row["r_text"], f"{row['c']:g}", row["topology"], f"{row['gmacs']:.4f}",
                  f"{row['params'] / 1e6:.3f}", lat, *[f"{row['accuracy'][t]['value']:.2f}" for t, _, _ in metric_cols])
    console.print(r)
    for line in summary_lines(runs):
        console.print(line)
    console.print("pictures: " + ", ".join(s["pictures"]))


def summary_lines(runs: list[dict]) -> list[str]:
    """The runs in words: each preference, its tree and what it cost next to the largest."""
    if not runs:
        return []
    big = max(runs, key=lambda x: x["gmacs"])
    lines = []
    for row in runs:
        share = 100 * row["gmacs"] / big["gmacs"] if big["gmacs"] else 100.0
        lat = "" if row["latency_ms_p50"] is None else f", {row['latency_ms_p50']:.2f} ms at p50"
        lines.append(f"- r = {row['r_text']}, c = {row['c']:g} ran tree {row['topology']}: "
                     f"{row['gmacs']:.4f} GMACs ({share:.0f}% of the largest run){lat}")
    return lines
