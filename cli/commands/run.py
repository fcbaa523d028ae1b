"""``dymu-rt run``: images at a preference (r, c) -> per-task PNGs, overview PNG, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.common import console, print_json


def run_command(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    r: Optional[str] = typer.Option(None, "--r", help="Task preference r, one weight per task summing to 1, e.g. "
                                    "0.6,0.2,0.2 (a static AdaShare/DAG bundle accepts and ignores it)."),
    c: Optional[str] = typer.Option(None, "--c", help="Resource preference c in [0, 1] (larger = more frugal)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Bundle directory (default: the installed one)."),
    profile: str = typer.Option("x86-64-cpu", "--profile", help="Device profile name or TOML path; its "
                                "backend key picks the backend (e.g. jetson-orin-nano -> TensorRT)."),
    out: Path = typer.Option(Path("dymu-out"), "--out", help="Folder for the output PNGs."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table: topology, "
                                 "binding, gmacs (multiply-adds / 1e9), gflops (2 x MACs / 1e9), params, latency_ms, images and outputs (task -> file for "
                                 "one image; for several, a list of task -> file aligned with images)."),
    normalize: bool = typer.Option(False, "--normalize", help="Rescale r to sum to 1."),
    latency_budget: Optional[float] = typer.Option(None, "--latency-budget", help="Milliseconds: pick the "
                                                   "smallest grid c whose measured p50 fits (needs `dymu-rt profile`)."),
    binding: Optional[str] = typer.Option(None, "--binding", help="ONNX Runtime binding mode: affine "
                                          "(default, instant switches) | session (fastest per frame, ~20-200 ms per switch) | initializers."),
) -> None:
    """Run IMAGES at preference (r, c); write one PNG per task per image and an overview PNG."""
    from dymu_rt.errors import ValidationError
    from dymu_rt.runtime import Runtime, default_bundle_path
    from dymu_rt.runtime.outputs import make_tasks, write_outputs
    from dymu_rt.runtime.preprocess import collect_images, load_image

    from dymu_rt.runtime.bundle import static_section

    path = bundle or default_bundle_path()
    static = static_section(path)
    if static is not None:
        if c is not None or latency_budget is not None:
            flag = "--c" if c is not None else "--latency-budget"
            raise ValidationError(f"bundle {path} holds one static architecture ({static.get('method')}): it has no "
                                  f"resource control, so {flag} cannot be honoured; omit it (--r is accepted and ignored)")
    elif (c is None) == (latency_budget is None):
        raise ValidationError("give exactly one of --c (resource preference in [0, 1]) or --latency-budget MS")
    elif r is None:
        raise ValidationError("missing option --r (task preference, e.g. 0.6,0.2,0.2)")
    files = collect_images(images)
    rt = Runtime.open(path, profile=profile, binding=binding)
    choice = None
    if static is not None:
        rt.set_preference(r, None, normalize=normalize)
    elif latency_budget is not None:
        choice = rt.choose_for_budget(r, latency_budget, normalize=normalize)
        rt.set_preference(choice["r"], choice["c"])
    else:
        rt.set_preference(r, c, normalize=normalize)
    tasks = make_tasks(rt.tasks)
    results, stems = [], set()
    for i, f in enumerate(files):
        img = load_image(f)
        raw = rt.infer([img])
        stem = f.stem if f.stem not in stems else f"{f.stem}_{i}"
        stems.add(stem)
        results.append(write_outputs(img, {k: v[0] for k, v in raw.items()}, tasks, out, stem))
    s = rt.stats()
    summary = {"topology": s["topology"], "binding": s["binding"], "grid_point": s["grid_point"],
               "r": s["r"], "c": s["c"], "gmacs": s["gmacs"], "gflops": s["gflops"], "macs": s["macs"],
               "params": s["params"], "backend": s["backend"],
               "latency_ms": s["latency_ms"], "profile": s["profile"], "binding_mode": s["binding_mode"],
               "budget_choice": choice, "images": [str(f) for f in files],
               "outputs": results[0] if len(results) == 1 else results}
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    t = Table(title=f"dymu-rt run: {len(files)} image(s) -> {out}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("preference", f"static {static.get('method')} architecture (r ignored, no c)" if static else
              f"r={','.join(f'{v:g}' for v in s['r'])}  c={s['c']:g}")
    if choice is not None:
        t.add_row("latency budget", f"{choice['budget_ms']:g} ms -> c={choice['c']:g} (measured p50 "
                  f"{choice['p50_ms']:.3g} ms{', r snapped to the grid' if choice['r_snapped'] else ''})")
    t.add_row("topology", s["topology"])
    gp = s["grid_point"]
    t.add_row("binding", s["binding"] + (f" (r={','.join(f'{v:g}' for v in gp['r'])}, c={gp['c']:g})" if gp else ""))
    t.add_row("GMACs (multiply-adds)", f"{s['gmacs']:.4f}")
    t.add_row("GFLOPs (2 x MACs)", f"{s['gflops']:.4f}")
    t.add_row("params", f"{s['params'] / 1e6:.3f} M")
    lat = s["latency_ms"]
    t.add_row("latency p50 / p90 / p99", f"{lat['p50_ms']:.2f} / {lat['p90_ms']:.2f} / {lat['p99_ms']:.2f} ms "
              f"({lat['n']} runs, {s['profile']}, {s['backend']})")
    t.add_row("outputs", f"{sum(len(x) for x in results)} PNGs in {out}")
    console.print(t)
