"""``dymu-rt inspect``: describe a preset, a run directory or a bundle."""

from __future__ import annotations

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.core.errors import BundleError


def inspect_command(
    target: str = typer.Argument(None, help="A preset name, a run directory or a bundle directory "
                                 "(default: the shipped bundle).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    verify: bool = typer.Option(False, "--verify", help="Bundles: also check every file's sha256."),
    size: str = typer.Option(None, "--size", help="Presets and runs: cost the anchor at this input "
                             "size, HxW (e.g. 512x512; default: the preset's)."),
) -> None:
    """Describe TARGET: tasks, layers, params and GMACs/GFLOPs; topologies of a bundle."""
    if target is None:
        target = str(lib.default_bundle_path())
    info = lib.describe(target, size)
    if verify and info["what"] == "bundle":
        info = lib.describe_bundle(target, check_hashes=True)
        info["verified"] = True
    unverified = info.get("verified") and info.get("manifest_checksum") != "verified"
    if as_json:
        print_json(info)
    else:
        {"preset": _preset, "run": _run, "bundle": _bundle}[info["what"]](info)
    if unverified:
        # --verify cannot vouch for a manifest without its checksum (only read at all under
        # --allow-unverified): it exits non-zero.
        raise BundleError(f"bundle {target}: manifest has no checksum (manifest.sha256.json); its content "
                          "cannot be verified; rebuild the bundle to add one")
    return
    {"preset": _preset, "run": _run, "bundle": _bundle}[info["what"]](info)


def _vs(ours: float, paper, fmt: str, scale: float = 1.0) -> str:
    """``ours (paper X, +d%)``, or just ``ours`` without a paper number. When ours rounds to
    the paper's figure at the paper's precision, say so instead of a spurious percentage."""
    text = format(ours / scale, fmt)
    if paper is None:
        return text
    p = paper / scale
    digits = max(0, len(f"{p:g}".split(".")[1]) if "." in f"{p:g}" else 0)
    if round(ours / scale, digits) == round(p, digits):
        return f"{text} (paper {p:g}: equal at its rounding)"
    return f"{text} (paper {p:g}, {100 * (ours / paper - 1):+.1f}%)"


def _costs(d: dict) -> None:
    ref = d.get("paper") or {}
    h, w = d["size"]
    at_paper_size = ref.get("size") == d["size"]
    console.print(f"single-task anchor net (all {len(d['tasks'])} streams) at {h}x{w}: "
                  f"{_vs(d['params'], ref.get('params'), '.3f', 1e6)} M params, {d['gmacs']:.4f} GMACs "
                  f"(conv+linear) = {d['gflops']:.4f} GFLOPs (2 x MACs); "
                  f"{_vs(d['gflops_paper'], ref.get('gflops_paper') if at_paper_size else None, '.4f')} "
                  f"GFLOPs in the paper's convention (fvcore)")
    if ref.get("size") and not at_paper_size:
        console.print(f"  (the paper's GFLOPs are at {ref['size'][0]}x{ref['size'][1]}: "
                      f"--size {ref['size'][0]}x{ref['size'][1]})")
    nb = d["non_branchable"]
    console.print(f"not branchable (shared stem + heads): {100 * nb['params_share']:.1f}% of params, "
                  f"{100 * nb['gmacs_share']:.1f}% of GMACs")
    phn = d["phn_shared_encoder"]
    console.print(f"PHN baseline (shared encoder): {_vs(phn['params'], ref.get('phn_params'), '.3f', 1e6)} M params, "
                  f"{phn['gflops_paper']:.4f} GFLOPs (paper's convention)")
    cp = d["controller_params"]
    console.print(f"controller: edge hypernet {_vs(cp['edge_hypernet'], ref.get('edge_hypernet'), '.3f', 1e6)} M, "
                  f"both hypernets {_vs(cp['total'], ref.get('controller'), '.3f', 1e6)} M params")
    if ref.get("note"):
        console.print(f"[yellow]note[/yellow]: {ref['note']}")


def _preset(d: dict) -> None:
    console.print(f"[bold]preset {d['name']}[/bold]: {d['description']}")
    console.print(f"tasks: {', '.join(t['name'] + ' (' + t['kind'] + ')' for t in d['tasks'])}")
    console.print(f"backbone {d['backbone']}, head {d['head']}, {d['layers']} layers per stream, "
                  f"input {d['input_size'][0]}x{d['input_size'][1]}")
    _costs(d)
    for row in d.get("dag", []):
        console.print(f"DAG central network (--method dag --flow {row['flow']}, before Algorithm 1): "
                      f"{row['states']} states, {row['edges']} edges, {row['params'] / 1e6:.2f} M params, "
                      f"{row['gmacs']:.2f} GMACs")


def _run(d: dict) -> None:
    console.print(f"[bold]run {d['path']}[/bold] ({d.get('method', 'dymu')}): preset {d['preset']}, data {d['data']}, "
                  f"tasks {', '.join(d['tasks'])}")
    for stage, st in d["stages"].items():
        console.print(f"  stage {stage}: {'done' if st.get('done') else 'not done'}")
    _costs(d)


def _latency(d: dict) -> None:
    """The measured latency tables (manifest or user cache) of a bundle, or how to make one."""
    if not d.get("latency"):
        how = "dymu-rt profile" if lib.is_shipped_bundle(d["path"]) else f"dymu-rt profile --bundle {d['path']}"
        console.print(f"latency: not profiled on any device yet (`{how}` times every topology here)")
        return
    for prof, lat in d["latency"].items():
        rows = lat["rows"]
        t = Table(title=f"measured latency on {prof} (from {lat['source']})")
        for col in ("topology", "batch", "runs", "p50 ms", "p90 ms", "p99 ms", "switch (load) ms", "threads"):
            t.add_column(col, justify="left" if col == "topology" else "right")
        for row in rows:
            t.add_row(row["topology"], str(row.get("batch", 1)), str(row.get("count", row.get("iters", "?"))),
                      f"{row['p50_ms']:.3f}", f"{row.get('p90_ms', float('nan')):.3f}",
                      f"{row.get('p99_ms', float('nan')):.3f}", f"{row.get('load_ms', float('nan')):.1f}",
                      str(row.get("threads", "?")))
        console.print(t)


def _bundle(d: dict) -> None:
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
    t = Table(title="topologies (most points first; GMACs = conv+linear MACs; GFLOPs (paper) = fvcore's count)")
    for col in ("topology", "points", "params (M)", "GMACs", "GFLOPs (paper)"):
        t.add_column(col, justify="left" if col == "topology" else "right")
    for top in d["topologies"]:
        gp = top.get("gflops_paper")
        t.add_row(top["id"], str(top["n_points"]), f"{top['params'] / 1e6:.3f}", f"{top['gmacs']:.4f}",
                  "-" if gp is None else f"{gp:.4f}")
    console.print(t)
    _latency(d)
    if d.get("verified"):
        console.print("all files match their sha256")
        console.print("manifest matches its checksum (manifest.sha256.json)" if d.get("manifest_checksum") == "verified"
                      else "manifest has no checksum (written before dymu-rt checksummed manifests): edits to it "
                           "cannot be detected; rebuild the bundle to add one")
