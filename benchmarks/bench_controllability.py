"""How much compute (r, c) buys with a trained run: range, c-ratio, per-r monotone share.

    python benchmarks/bench_controllability.py RUN [--bundle BUNDLE] [--png OUT.png] [--json OUT.json]

* range: GMACs of the single-task anchor and of the smallest / largest predicted tree (over
  the grid, and over the bundle's topologies when --bundle is given);
* c-ratio: mean GMACs (params, paper GFLOPs) over r ~ Dir(--eta) (default 1: uniform) at c = 1 / at c = 0;
* per-r monotone share: the share of grid r's whose tree cost never rises as c goes up.

Costs are counted, not timed (deterministic: no threads to pin). The PNG plots the Dir(--eta)
mean GMACs against c and every grid r's GMACs against c.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="trained run directory (edge stage done)")
    ap.add_argument("--bundle", type=Path, help="also report the span of this bundle's topologies")
    ap.add_argument("--step", type=float, default=0.1, help="r grid step (default 0.1)")
    ap.add_argument("--c-step", type=float, default=0.1, help="c grid step (default 0.1)")
    ap.add_argument("--n-dir", type=int, default=1000, help="sampled r for the c-ratio (the paper: 1000)")
    ap.add_argument("--eta", type=float, default=1.0, help="r ~ Dir(eta) for the c-ratio (default 1: uniform "
                    "on the simplex, the paper's protocol; 0.2 = the training law)")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--png", type=Path, help="write the plot here")
    args = ap.parse_args(argv)

    from dymu_rt.core.errors import DymuError
    from dymu_rt.evaluate.controllability import controllability
    from dymu_rt.run.layout import RunDir

    try:
        run = RunDir(args.run)
        if not run.stage_done("edge"):
            sys.exit(f"error: {args.run}: the edge stage has not finished")
        anchor, edge = run.load_anchor(), run.load_edge_hypernet()
        res = controllability(anchor, edge, step=args.step, c_step=args.c_step, n_dir=args.n_dir, eta=args.eta)
    except DymuError as e:
        sys.exit(f"error: {e}")
    if args.bundle is not None:
        m = json.loads((args.bundle / "manifest.json").read_text())
        macs = [t["macs"] for t in m["topologies"].values()]
        res["bundle"] = {"n_topologies": len(macs), "min_gmacs": min(macs) / 1e9, "max_gmacs": max(macs) / 1e9,
                         "min_over_anchor": min(macs) / res["anchor"]["macs"], "max_over_min": max(macs) / min(macs)}

    a, rg, cr = res["anchor"], res["range"], res["c_ratio"]
    print(f"single-task anchor: {a['gmacs']:.4f} GMACs, {a['params'] / 1e6:.3f} M params")
    print(f"grid (step {args.step:g}, c step {args.c_step:g}): trees {rg['min_gmacs']:.4f} - {rg['max_gmacs']:.4f} "
          f"GMACs; smallest / anchor {rg['min_over_anchor']:.3f}; span {rg['max_over_min']:.2f}x")
    if "bundle" in res:
        b = res["bundle"]
        print(f"bundle ({b['n_topologies']} topologies): {b['min_gmacs']:.4f} - {b['max_gmacs']:.4f} GMACs; "
              f"smallest / anchor {b['min_over_anchor']:.3f}; span {b['max_over_min']:.2f}x")
    print(f"mean over {args.n_dir} r ~ Dir({args.eta:g}), by c: " + ", ".join(
        f"c={c}: {v['gmacs']:.4f} GMACs / {v['params'] / 1e6:.3f} M" for c, v in res["dir_mean_by_c"].items()))
    print(f"c-ratio (c=1 / c=0): GMACs {cr['gmacs']:.3f}, params {cr['params']:.3f}, paper GFLOPs {cr['gflops_paper']:.3f}")
    print(f"per-r monotone share: {100 * res['monotone_share']:.1f}% of {res['grid']['n_r']} grid r's have a "
          f"cost non-increasing in c")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    if args.png:
        _plot(res, args.png)
        print(f"plot: {args.png}")
    return 0


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    cs = [float(c) for c in res["dir_mean_by_c"]]
    ax1.plot(cs, [v["gmacs"] for v in res["dir_mean_by_c"].values()], "o-", label=f"mean over r ~ {res.get('r_law', 'Dir(1)')}")
    ax1.axhline(res["anchor"]["gmacs"], color="k", ls="--", label="single-task anchor")
    ax1.set_xlabel("c (resource preference; larger = more frugal)")
    ax1.set_ylabel("GMACs")
    ax1.set_ylim(0, res["anchor"]["gmacs"] * 1.05)
    ax1.legend()
    ax1.set_title(f"mean cost vs c (c=1 / c=0: {res['c_ratio']['gmacs']:.2f}x)")
    c_values = res["grid"]["c_values"]
    for p in res["per_r"]:
        ax2.plot(c_values, p["gmacs"], color="C0" if p["non_increasing"] else "C3", alpha=0.35, lw=1)
    ax2.axhline(res["anchor"]["gmacs"], color="k", ls="--")
    ax2.set_ylim(0, res["anchor"]["gmacs"] * 1.05)
    ax2.set_xlabel("c")
    ax2.set_title(f"every grid r: {100 * res['monotone_share']:.0f}% non-increasing (blue), rest red")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
