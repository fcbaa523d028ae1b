"""Build time and bundle size grow with topologies, not grid points.

Builds the same run at two grid steps (default 0.2 and 0.1) into fresh bundles and reports,
per grid: points, topologies, seconds, bytes (total, the shared weight file, the mean
topology graph), and seconds/bytes per topology and per point. Bundle size should be
about the weight file + controller + a graph *structure* (tens of KB) per topology.
The ratios (0.1 vs 0.2) are measured in one run of this script on the same machine, so
they are comparable; absolute seconds depend on the machine and its load.

    python benchmarks/bench_build.py RUN_DIR [--grids 0.2,0.1] [--json OUT]

Without RUN_DIR a tiny random run is created (tests/compile/run_fixture.py) — useful only
to check the script; rerun it on a trained run (e.g. runs/synth-nyu) for real numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="trained run directory (default: a tiny random run)")
    ap.add_argument("--grids", default="0.2,0.1", help="comma-separated grid steps")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from dymu_rt.methods import build_bundle

    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        run = args.run_dir
        if run is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compile"))
            from run_fixture import make_tiny_run

            run = make_tiny_run(Path(tmp) / "run")
        rows = []
        for step in [s.strip() for s in args.grids.split(",") if s.strip()]:
            out = Path(tmp) / f"bundle_{step}"
            s = build_bundle(run, out, step=step, progress=False)
            graphs = [f.stat().st_size for f in (out / "graphs").glob("*.onnx")]
            rows.append({"grid": step, "points": s["points"], "topologies": s["topologies"],
                         "seconds": s["seconds"], "bytes": s["bundle_bytes"],
                         "weights_bytes": s.get("weights_bytes", 0),
                         "graph_bytes_mean": sum(graphs) / max(1, len(graphs)),
                         "s_per_topology": s["seconds"] / s["topologies"],
                         "bytes_per_topology": s["bundle_bytes"] / s["topologies"],
                         "s_per_point": s["seconds"] / s["points"]})
    hdr = (f"{'grid':>6} {'points':>7} {'topologies':>10} {'seconds':>8} {'MiB':>8} {'weights MiB':>11} "
           f"{'KiB/graph':>9} {'s/topology':>10}")
    print(f"run: {run}")
    print(hdr)
    for r in rows:
        print(f"{r['grid']:>6} {r['points']:>7} {r['topologies']:>10} {r['seconds']:>8.1f} "
              f"{r['bytes'] / 2**20:>8.2f} {r['weights_bytes'] / 2**20:>11.2f} "
              f"{r['graph_bytes_mean'] / 2**10:>9.1f} {r['s_per_topology']:>10.3f}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"{b['grid']} vs {a['grid']}: points x{b['points'] / a['points']:.2f}, "
              f"topologies x{b['topologies'] / a['topologies']:.2f}, time x{b['seconds'] / a['seconds']:.2f}, "
              f"bytes x{b['bytes'] / a['bytes']:.2f}")
        print(f"per topology: one graph structure of ~{b['graph_bytes_mean'] / 2**10:.0f} KiB; the tensors are "
              f"stored once ({b['weights_bytes'] / 2**20:.2f} MiB weight file)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
