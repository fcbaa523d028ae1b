"""What one cross-task edge costs: per layer and stream pair, the pure stream of task j with
its node at that layer reading stream i's previous node instead, and how aligned the streams'
channels are (issue 22).

For each branching row l (1..L-1; row 0 reads the shared stem) and ordered pair (i, j),
i != j, the tree is the identity except ``parents[l, j] = i``. Task j's primary metric on
that tree is reported as a fraction of the pure stream's, measured above a constant
predictor (the anchor stage's trivial baseline: majority class / mean depth / mean normal):

    kept = (m_cross - m_const) / (m_pure - m_const)

(1 = the edge costs nothing, 0 = as bad as predicting a constant; for a lower-is-better
metric the same formula with both gaps of the same sign). Each tree is measured without
adaptation (raw anchor weights) and, when the run has a weight hypernet, with its BN
deltas for ``--r`` / ``--c`` (default uniform r, c = 0: the preference the deployed
uniform-r tree is evaluated at). Channel alignment: per layer and pair, the mean over
channels of the Pearson correlation of channel k of stream i with channel k of stream j
(identity tree, every pixel of ``--n-align`` validation images).

``--bn-images K`` adds a third measurement per tree (the "BN statistics for cross edges"
lever): the running statistics of the BNs downstream of the edge (task j's nodes from the
edge's layer up, and its head) re-estimated on K un-augmented training scenes through that
tree, then measured raw and with the weight hypernet (``kept_bn``, ``kept_bn_adapted``).

    nice -n 10 python benchmarks/bench_cross_edges.py runs/x --n-val 200 \\
        --json benchmarks/results/issue22/cross_edges.json --png benchmarks/results/issue22/cross_edges.png

Threads: ``--threads`` (default 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _kept(m_cross: float, m_pure: float, m_const: float) -> float:
    gap = m_pure - m_const
    return float((m_cross - m_const) / gap) if gap != 0 else float("nan")


@torch.no_grad()
def channel_alignment(anchor, images: torch.Tensor) -> list[dict]:
    """Per layer: mean same-index channel correlation for every ordered... unordered pair."""
    feats = anchor.stream_features(images)
    out = []
    for l, per in enumerate(feats):
        row = {}
        for i in range(len(per)):
            for j in range(i + 1, len(per)):
                a = per[i].transpose(0, 1).reshape(per[i].shape[1], -1)
                b = per[j].transpose(0, 1).reshape(per[j].shape[1], -1)
                a = a - a.mean(1, keepdim=True)
                b = b - b.mean(1, keepdim=True)
                den = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
                corr = (a * b).sum(1) / den
                alive = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
                row[f"{i}-{j}"] = float(corr[alive].mean()) if bool(alive.any()) else float("nan")
        out.append({"layer": l, "pairs": row, "mean": float(np.nanmean(list(row.values())))})
    return out


@torch.no_grad()
def reestimate_bn(anchor, parents, l: int, j: int, images: torch.Tensor, batch: int = 32):
    """A copy of ``anchor`` whose BNs downstream of the edge into node (l, j) (task j's nodes at
    rows l.., and its head) have running statistics re-estimated through the tree ``parents``."""
    import copy

    net = copy.deepcopy(anchor).eval()
    for l2 in range(l, anchor.num_layers + 1):
        for bn in net._node_bns[(l2, j)]:
            bn.reset_running_stats()
            bn.momentum = None          # cumulative average over the K images
            bn.train()
    for k in range(0, images.shape[0], batch):
        net(images[k:k + batch], parents)
    return net.eval()


def measure(run_dir: Path, n_val: int, r=None, c: float = 0.0, n_align: int = 32, progress: bool = True,
            bn_images: int = 0) -> dict:
    from dymu_rt.core.tree import identity_table
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.common import make_split, make_tasks
    from dymu_rt.training.evaluation import evaluate_tree

    run = RunDir(run_dir)
    if not run.stage_done("anchor"):
        sys.exit(f"error: {run_dir}: the anchor stage has not finished")
    preset = run.preset()
    anchor = run.load_anchor()
    weight = run.load_weight_hypernet(anchor.bn_delta_size) if run.stage_done("weight") else None
    tasks = make_tasks(preset)
    cfg = run.read_config()
    seed = int((cfg.get("data_options") or {}).get("seed") or 0)
    val = make_split(preset, cfg["data"], "val", n=n_val, seed=seed)
    base = cfg["stages"]["anchor"].get("baselines")
    if base is None:
        sys.exit(f"error: {run_dir}: the anchor stage recorded no trivial baselines")
    n, L = anchor.num_tasks, anchor.num_layers
    r_t = torch.full((n,), 1.0 / n) if r is None else torch.tensor(r, dtype=torch.float32)
    deltas = weight(r_t, torch.tensor(float(c))) if weight is not None else None
    bn_imgs = None
    if bn_images > 0:
        tr = make_split(preset, cfg["data"], "train", n=bn_images, augment=False, seed=seed)
        bn_imgs = torch.stack([tr[k]["image"] for k in range(len(tr))])
    prim = {t.name: (t.primary_metric, t.metric_directions[t.primary_metric]) for t in tasks}
    ident = identity_table(L, n)
    pure = evaluate_tree(anchor, tasks, val, ident, None)
    pure_ad = evaluate_tree(anchor, tasks, val, ident, deltas) if deltas is not None else None
    rows = []
    t0 = time.perf_counter()
    for l in range(1, L):
        for j in range(n):
            for i in range(n):
                if i == j:
                    continue
                p = ident.copy()
                p[l, j] = i
                name, _ = prim[tasks[j].name]
                const = float(base[tasks[j].name][name])
                m = evaluate_tree(anchor, [tasks[j]], val, p, None)[tasks[j].name][name]
                row = {"layer": l, "from": i, "to": j, "task": tasks[j].name, "metric": name,
                       "value": float(m), "pure": float(pure[tasks[j].name][name]), "const": const,
                       "kept": _kept(float(m), float(pure[tasks[j].name][name]), const)}
                if deltas is not None:
                    ma = evaluate_tree(anchor, [tasks[j]], val, p, deltas)[tasks[j].name][name]
                    row.update({"value_adapted": float(ma),
                                # Against the pure stream without adaptation (what the anchor gives).
                                "kept_adapted": _kept(float(ma), float(pure[tasks[j].name][name]), const)})
                if bn_imgs is not None:
                    net = reestimate_bn(anchor, p, l, j, bn_imgs)
                    mb = evaluate_tree(net, [tasks[j]], val, p, None)[tasks[j].name][name]
                    row.update({"value_bn": float(mb), "kept_bn": _kept(float(mb), float(pure[tasks[j].name][name]), const)})
                    if deltas is not None:
                        mba = evaluate_tree(net, [tasks[j]], val, p, deltas)[tasks[j].name][name]
                        row.update({"value_bn_adapted": float(mba),
                                    "kept_bn_adapted": _kept(float(mba), float(pure[tasks[j].name][name]), const)})
                rows.append(row)
                if progress:
                    print(f"layer {l} {i}->{j} ({tasks[j].name} {name}): kept {row['kept']:.2f}"
                          + (f", adapted {row['kept_adapted']:.2f}" if deltas is not None else "")
                          + (f", BN re-estimated {row['kept_bn']:.2f}" if bn_imgs is not None else ""), flush=True)
    imgs = torch.stack([val[k]["image"] for k in range(min(n_align, len(val)))])
    align = channel_alignment(anchor, imgs)
    by_layer = []
    for l in range(1, L):
        sel = [row for row in rows if row["layer"] == l]
        by_layer.append({"layer": l, "kept": float(np.mean([row["kept"] for row in sel])),
                         "kept_adapted": float(np.mean([row["kept_adapted"] for row in sel]))
                         if deltas is not None else None,
                         "kept_bn": float(np.mean([row["kept_bn"] for row in sel])) if bn_imgs is not None else None})
    return {"run": str(run_dir), "preset": preset.name, "anchor_init": preset.train.anchor_init,
            "n_val": len(val), "weight_hypernet_preference": {"r": r_t.tolist(), "c": c} if deltas is not None else None,
            "pure": {t.name: pure[t.name][prim[t.name][0]] for t in tasks},
            "pure_adapted": {t.name: pure_ad[t.name][prim[t.name][0]] for t in tasks} if pure_ad else None,
            "const": {t.name: float(base[t.name][prim[t.name][0]]) for t in tasks},
            "primary": {k: {"metric": v[0], "higher_is_better": bool(v[1])} for k, v in prim.items()},
            "rows": rows, "by_layer": by_layer,
            "mean_kept": float(np.mean([row["kept"] for row in rows])),
            "mean_kept_adapted": float(np.mean([row["kept_adapted"] for row in rows])) if deltas is not None else None,
            "bn_images": bn_images,
            "mean_kept_bn": float(np.mean([row["kept_bn"] for row in rows])) if bn_imgs is not None else None,
            "mean_kept_bn_adapted": float(np.mean([row["kept_bn_adapted"] for row in rows]))
            if bn_imgs is not None and deltas is not None else None,
            "alignment": align, "seconds": round(time.perf_counter() - t0, 1)}


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for res in results:
        tag = f"{Path(res['run']).name} ({res['anchor_init']})"
        layers = [b["layer"] for b in res["by_layer"]]
        ax1.plot(layers, [b["kept"] for b in res["by_layer"]], "o-", label=f"{tag}, raw")
        if res["mean_kept_adapted"] is not None:
            ax1.plot(layers, [b["kept_adapted"] for b in res["by_layer"]], "s--", label=f"{tag}, weight hypernet")
        if res.get("mean_kept_bn") is not None:
            ax1.plot(layers, [b["kept_bn"] for b in res["by_layer"]], "^:", label=f"{tag}, BN re-estimated")
        ax2.plot([a["layer"] for a in res["alignment"]], [a["mean"] for a in res["alignment"]], "o-", label=tag)
    ax1.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax1.set_xlabel("layer of the cross edge")
    ax1.set_ylabel("kept share of the pure stream's metric\n(above a constant predictor)")
    ax1.set_title("one cross-task edge, mean over stream pairs")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("layer")
    ax2.set_ylabel("mean same-index channel correlation")
    ax2.set_title("channel alignment between streams")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="trained run directories (anchor done; weight optional)")
    ap.add_argument("--n-val", type=int, default=200, help="validation scenes")
    ap.add_argument("--r", default=None, help="weight hypernet's r (comma separated; default uniform)")
    ap.add_argument("--c", type=float, default=0.0, help="weight hypernet's c (default 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bn-images", type=int, default=0, help="also re-estimate the BN statistics downstream of "
                    "each edge on this many training scenes (0 = off)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args(argv)
    if args.n_val < 1 or args.threads < 1 or not 0 <= args.c <= 1 or args.bn_images < 0:
        sys.exit("error: --n-val and --threads must be >= 1, --c in [0, 1], --bn-images >= 0")
    torch.set_num_threads(args.threads)
    r = None
    if args.r is not None:
        try:
            r = [float(v) for v in args.r.split(",")]
        except ValueError:
            sys.exit(f"error: --r {args.r!r}: expected comma-separated numbers")
    results = [measure(run, args.n_val, r, args.c, bn_images=args.bn_images) for run in args.runs]
    for res in results:
        print(f"{res['run']} ({res['anchor_init']}): mean kept {res['mean_kept']:.3f}"
              + (f", with the weight hypernet {res['mean_kept_adapted']:.3f}" if res["mean_kept_adapted"] is not None
                 else "")
              + (f"; BN re-estimated {res['mean_kept_bn']:.3f}" if res["mean_kept_bn"] is not None else "")
              + (f" ({res['mean_kept_bn_adapted']:.3f} with the weight hypernet)"
                 if res["mean_kept_bn_adapted"] is not None else "")
              + "; alignment by layer " + " ".join(f"{a['mean']:.2f}" for a in res["alignment"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "results": results}, indent=1))
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
