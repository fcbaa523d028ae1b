"""Pictures of a controller evaluation (PNG): resource map, trees, controllability.

* ``resource_map.png``: GMACs of the edge hypernet's tree over a dense simplex grid (step
  0.05) for c in {0, 0.25, 0.5, 0.75, 1} (the paper's Figure 5), drawn with the bundle
  resource-map code on the same kind of point table.
* ``trees.png``: the predicted trees for a few (r, c) as diagrams (alive nodes filled,
  dead nodes hollow, cross-task edges red).
* ``controllability.png``: per task, its validation loss against its preference r_i, one
  colour per c (the marginal controllability curves).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dymu_rt.utils.io import atomic_path


def dense_resource_table(edge, cost, task_names, step: str = "0.05",
                         cs=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict[str, Any]:
    """A manifest-like point table (points, topologies, tasks, grid) of tree GMACs."""
    from dymu_rt.control.preference import grid_r
    from dymu_rt.models.tree import topology_id

    points, tops = [], {}
    for r in grid_r(len(task_names), step):
        rt = torch.tensor([float(v) for v in r], dtype=torch.float32)
        for c in cs:
            p = edge.architecture(rt, torch.tensor(float(c)))
            tid = topology_id(p)
            if tid not in tops:
                tops[tid] = {"gflops": cost.tree_cost(p).gmacs}
            points.append({"r": [float(v) for v in r], "c": float(c), "topology": tid})
    return {"points": points, "topologies": tops, "tasks": [{"name": n} for n in task_names],
            "grid": {"step": float(Fraction(step))},
            "preset": "controller"}


def plot_trees(trees: list[tuple[str, np.ndarray]], task_names: list[str], out: Path) -> Path:
    """Draw parent tables as node diagrams, one panel per (label, table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dymu_rt.models.tree import canonicalize

    fig, axes = plt.subplots(1, len(trees), figsize=(3.2 * len(trees), 4.2), squeeze=False,
                             layout="constrained")
    for ax, (label, table) in zip(axes.flat, trees):
        p = canonicalize(table)
        L, N = p.shape
        for l in range(L):
            for j in range(N):
                alive = p[l, j] >= 0
                ax.scatter([j], [l], s=90, facecolors=f"C{j}" if alive else "none",
                           edgecolors=f"C{j}", zorder=3)
                if alive and l > 0:
                    k = p[l, j]
                    ax.plot([k, j], [l - 1, l], color="red" if k != j else "0.4",
                            lw=2.0 if k != j else 1.2, zorder=2)
        for j, name in enumerate(task_names):
            ax.annotate(name, (j, L - 0.4), ha="center", fontsize=8)
        ax.set_xlim(-0.6, N - 0.4)
        ax.set_ylim(-0.8, L + 0.2)
        ax.set_xticks(range(N))
        ax.set_xticklabels([f"stream {j}" for j in range(N)], fontsize=7)
        ax.set_ylabel("layer")
        ax.set_title(label, fontsize=8)
    fig.suptitle("predicted trees (filled = runs, hollow = pruned, red = cross-task edge)", fontsize=9)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def plot_controllability(report: dict[str, Any], out: Path) -> Path:
    """Per task: validation loss vs r_i, one series per c (sampled preferences)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = report["tasks"]
    rows = report["preferences"]
    cs = sorted({row["c"] for row in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False,
                             layout="constrained")
    for i, (ax, task) in enumerate(zip(axes.flat, tasks)):
        for k, c in enumerate(cs):
            sel = sorted((row["r"][i], row["metrics"][task]["loss"]) for row in rows if row["c"] == c)
            if not sel:
                continue
            x, y = np.asarray(sel).T
            ax.plot(x, y, "o-", ms=3, lw=1, color=f"C{k}", label=f"c = {c:g}")
        ax.set_xlabel(f"r ({task})")
        ax.set_ylabel("validation loss")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.suptitle("marginal controllability: a task's loss falls as its preference rises", fontsize=9)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def write_eval_plots(run_dir, report: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the evaluation PNGs under ``out_dir``; returns their paths."""
    from dymu_rt.compile.resource_map import plot_resource_map
    from dymu_rt.models.cost import CostModel
    from dymu_rt.train.checkpoint import RunDir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = RunDir(run_dir)
    anchor, edge = run.load_anchor(), run.load_edge_hypernet()
    names = report["tasks"]
    n = len(names)
    table = dense_resource_table(edge, CostModel(anchor), names, "0.05" if n == 3 else "0.25")
    files = [plot_resource_map(table, out_dir / "resource_map.png",
                               title=f"{report['preset']}: GFLOPs (GMACs) of the predicted tree")]
    picks = [("uniform r, c = 0", np.full(n, 1.0 / n), 0.0), ("uniform r, c = 1", np.full(n, 1.0 / n), 1.0)]
    skew = np.full(n, 0.1 / max(1, n - 1))
    skew[0] = 0.9
    picks += [(f"r = 0.9 {names[0]}, c = 0", skew, 0.0), (f"r = 0.9 {names[0]}, c = 1", skew, 1.0)]
    trees = [(label, edge.architecture(torch.tensor(r, dtype=torch.float32), torch.tensor(c)))
             for label, r, c in picks]
    files.append(plot_trees(trees, names, out_dir / "trees.png"))
    files.append(plot_controllability(report, out_dir / "controllability.png"))
    return [str(f) for f in files]
