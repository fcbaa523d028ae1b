"""``dymu-rt run``: images at a preference (r, c) -> per-task PNGs, overview PNG, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.core.preference import format_r


def run_command(
    # str, not Path: Path("") is ".", and an empty argument must be refused, not read as the cwd.
    images: list[str] = typer.Argument(..., help="Image files and/or folders of images."),
    r: Optional[str] = typer.Option(None, "--r", help="Task preference r, one weight per task summing to 1, e.g. "
                                    "0.6,0.2,0.2 (a static AdaShare/DAG bundle accepts and ignores it)."),
    c: Optional[str] = typer.Option(None, "--c", help="Resource preference c in [0, 1] (larger = more frugal)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Bundle directory (default: the installed one)."),
    profile: str = typer.Option("x86-64-cpu", "--profile", help="Device profile name or TOML path; its "
                                "backend key picks the backend (e.g. jetson-orin-nano -> TensorRT)."),
    out: Path = typer.Option(Path("dymu-out"), "--out", help="Folder for the output PNGs (at each input "
                             "image's size). Refused when it holds a file of an output's name that dymu-rt "
                             "did not write, unless --overwrite."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed runs before the timed ones (after "
                                         "the cold first call, which is reported on its own). Default 10, "
                                         "fewer when one run is slow (about 1 s of warm-up).",
                                         show_default=False),
    iters: Optional[int] = typer.Option(None, "--iters", help="Timed runs of the first image (0: none). "
                                        "Default 100, fewer when one run is slow (about 3 s, at least 5). "
                                        "p50 needs >= 5, p90 >= 10, p99 >= 100 runs; fewer are not reported.",
                                        show_default=False),
    save_outputs: Optional[Path] = typer.Option(None, "--save-outputs", help="Folder for the raw outputs as "
                                                ".npy (float32, at the model's resolution and at the input's), "
                                                "described by its outputs.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files of the outputs' names in --out / "
                                   "--save-outputs even when dymu-rt did not write that folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table: topology, "
                                 "binding, gmacs (multiply-adds / 1e9), gflops (2 x MACs / 1e9), gflops_paper (the paper's fvcore count / 1e9), params, latency_ms, images and outputs (task -> file for "
                                 "one image; for several, a list of task -> file aligned with images)."),
    normalize: bool = typer.Option(False, "--normalize", help="Rescale r to sum to 1."),
    latency_budget: Optional[float] = typer.Option(None, "--latency-budget", help="Milliseconds: pick the "
                                                   "smallest grid c whose measured latency (at --percentile, "
                                                   "plus the switch cost) fits (needs `dymu-rt profile`)."),
    percentile: str = typer.Option("p50", "--percentile", help="Latency percentile the budget applies to: "
                                   "p50 | p90 | p99."),
    binding: Optional[str] = typer.Option(None, "--binding", help="ONNX Runtime binding mode: affine "
                                          "(default, instant switches) | session (fastest per frame, ~20-200 ms per switch) | initializers."),
) -> None:
    """Run IMAGES at preference (r, c); write one PNG per task per image and an overview PNG
    (input, task maps at the input's size, class legend, colour bars); print cost and latency.
    """
    path = bundle or lib.default_bundle_path()
    static = lib.static_section(path)
    lib.check_choice(c, latency_budget, static, r, path)
    files = lib.collect_images(images)
    # One-shot: wait for the preference's folded engine (the steady state; docs/runtime-tiers.md).
    rt = lib.Runtime.open(path, profile=profile, binding=binding, second_tier="sync")
    summary = lib.run_images(rt, files, out, r, c, latency_budget, normalize, percentile, warmup=warmup, iters=iters,
                             save_outputs=save_outputs, overwrite=overwrite)
    s, choice = summary, summary["budget_choice"]
    results = summary["outputs"] if len(files) > 1 else [summary["outputs"]]
    if as_json:
        print_json(summary)
        return

    t = Table(title=f"dymu-rt run: {len(files)} image(s) -> {out}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("preference", f"static {static.get('method')} architecture (r ignored, no c)" if static else
              f"r={format_r(s['r'])}  c={s['c']:g}")
    if choice is not None:
        t.add_row("latency budget", f"{choice['budget_ms']:g} ms -> c={choice['c']:g} (measured "
                  f"{choice['percentile']} {choice['latency_ms']:.3g} ms + switch {choice['switch_ms']:.3g} ms"
                  f"{', r snapped to the grid' if choice['r_snapped'] else ''})")
    t.add_row("topology", s["topology"])
    gp = s["grid_point"]
    t.add_row("binding", s["binding"] + (f" (r={','.join(f'{v:g}' for v in gp['r'])}, c={gp['c']:g})" if gp else ""))
    t.add_row("GMACs (multiply-adds)", f"{s['gmacs']:.4f}")
    t.add_row("GFLOPs (2 x MACs)", f"{s['gflops']:.4f}")
    if s.get("gflops_paper") is not None:
        t.add_row("GFLOPs, the paper's convention (fvcore)", f"{s['gflops_paper']:.4f}")
    t.add_row("params", f"{s['params'] / 1e6:.3f} M")
    lat = s["latency_ms"]
    t.add_row("first call (cold)", f"{lat['cold_ms']:.2f} ms (after {lat['setup_ms']:.1f} ms to load the engine "
              "and bind the weights)")
    if lat["count"]:
        ms = lambda k: "-" if lat[k] is None else f"{lat[k]:.2f}"  # noqa: E731
        t.add_row("latency p50 / p90 / p99", f"{ms('p50_ms')} / {ms('p90_ms')} / {ms('p99_ms')} ms "
                  f"({lat['count']} runs after {lat['warmup']} warm-up, {s['profile']}, {s['backend']})")
    else:
        t.add_row("latency", "not timed (--iters 0)")
    t.add_row("outputs", f"{sum(len(x) for x in results)} PNGs in {out}"
              + (f"; raw .npy described in {s['raw_outputs']}" if s.get("raw_outputs") else ""))
    console.print(t)
