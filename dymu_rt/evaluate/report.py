"""Pictures of a controller evaluation (PNG): resource map, trees, controllability.

* ``resource_map.png``: GMACs of the edge hypernet's tree over a dense simplex grid (step
  0.05) for c in {0, 0.25, 0.5, 0.75, 1} (the paper's Figure 5), drawn with the bundle
  resource-map code on the same kind of point table.
* ``trees.png``: the predicted trees for a few (r, c) (``dymu_rt.evaluate.plots``).
* ``controllability.png``: per task, its validation loss against its preference r_i, one
  colour per c (the marginal controllability curves, ``dymu_rt.evaluate.plots``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch



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


def write_eval_plots(run_dir, report: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the evaluation PNGs under ``out_dir``; returns their paths."""
    from dymu_rt.compile.resource_map import plot_resource_map
    from dymu_rt.evaluate.plots import plot_controllability, plot_trees
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
    files.append(plot_trees(trees, out_dir / "trees.png", task_names=names,
                            title="predicted trees (pruned nodes hollow, cross-task edges red)"))
    rows = [(row["r"], row["c"], [row["metrics"][t]["loss"] for t in names]) for row in report["preferences"]]
    files.append(plot_controllability(rows, out_dir / "controllability.png", task_names=names))
    return [str(f) for f in files]
