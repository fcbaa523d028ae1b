"""``dymu-rt inspect``: describe a preset, a run directory or a bundle."""

from __future__ import annotations

import typer

from dymu_rt.cli.common import console, print_json


def inspect_command(
    target: str = typer.Argument(..., help="A preset name, a run directory or a bundle directory."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    verify: bool = typer.Option(False, "--verify", help="Bundles: also check every file's sha256."),
) -> None:
    """Describe TARGET: tasks, layers, params and GMACs/GFLOPs; topologies of a bundle."""
    from dymu_rt.compile.describe import describe, describe_bundle

    info = describe(target)
    if verify and info["what"] == "bundle":
        info = describe_bundle(target, check_hashes=True)
        info["verified"] = True
    if as_json:
        print_json(info)
        return
    {"preset": _preset, "run": _run, "bundle": _bundle}[info["what"]](info)


def _preset(d: dict) -> None:
    console.print(f"[bold]preset {d['name']}[/bold]: {d['description']}")
    console.print(f"tasks: {', '.join(t['name'] + ' (' + t['kind'] + ')' for t in d['tasks'])}")
    console.print(f"backbone {d['backbone']}, head {d['head']}, {d['layers']} layers per stream, "
                  f"input {d['input_size'][0]}x{d['input_size'][1]}")
    console.print(f"single-task anchor net (all {len(d['tasks'])} streams): {d['params'] / 1e6:.3f} M params, "
                  f"{d['gmacs']:.4f} GMACs (the paper's 'GFLOPs') = {d['gflops']:.4f} GFLOPs (2 x MACs)")


def _run(d: dict) -> None:
    console.print(f"[bold]run {d['path']}[/bold] ({d.get('method', 'dymu')}): preset {d['preset']}, data {d['data']}, "
                  f"tasks {', '.join(d['tasks'])}")
    for stage, st in d["stages"].items():
        console.print(f"  stage {stage}: {'done' if st.get('done') else 'not done'}")


def _bundle(d: dict) -> None:
    from rich.table import Table

    st = d.get("static")
    if st:
        top = d["topologies"][0]
        console.print(f"[bold]bundle {d['path']}[/bold]: preset {d['preset']} (trained on "
                      f"{d.get('training_data') or d['trained_on']}), tasks {', '.join(d['tasks'])}")
        console.print(f"static architecture ({st['method']}): one topology {top['id']}, {st['nodes']} graph nodes, "
                      f"{top['params'] / 1e6:.3f} M params, {top['gmacs']:.4f} GMACs, "
                      f"{d['bundle_bytes'] / 2**20:.2f} MiB; weights shared across tasks: "
                      f"{', '.join(st['shared_modules']) or 'none'}")
        console.print(f"preferences: {st['preference']}")
        if d.get("verified"):
            console.print("all files match their sha256")
        return

    console.print(f"[bold]bundle {d['path']}[/bold]: preset {d['preset']} (trained on {d.get('training_data') or d['trained_on']}), "
                  f"tasks {', '.join(d['tasks'])}; {d['points']} grid points "
                  f"(step {d['grid']['step']:g}, c step {d['grid']['c_step']:g}), "
                  f"{d['n_topologies']} topologies, {d['bundle_bytes'] / 2**20:.2f} MiB")
    t = Table(title="topologies (most points first; GMACs = the paper's GFLOPs)")
    for col in ("topology", "points", "params (M)", "GMACs"):
        t.add_column(col, justify="left" if col == "topology" else "right")
    for top in d["topologies"]:
        t.add_row(top["id"], str(top["n_points"]), f"{top['params'] / 1e6:.3f}", f"{top['gmacs']:.4f}")
    console.print(t)
    if d.get("verified"):
        console.print("all files match their sha256")
