"""How much compute a trained edge hypernet lets (r, c) buy: the numbers behind "moving c
buys real compute" (issue 12), computed from a run's anchor and edge hypernet.

* **range**: GMACs of the single-task anchor, of the smallest and largest tree the grid
  predicts; smallest / anchor and largest / smallest.
* **c-ratio**: mean GMACs (and params) of the predicted trees over r ~ Dir(eta) (default 1:
  uniform on S_N, the paper's protocol), also over the >= 2-active-task part, at c = 1
  divided by that at c = 0 (the paper: 0.89x in GFLOPs, 0.845x in params on NYU-v2).
* **per-r monotone share**: for each r of the grid, is the tree's cost non-increasing as
  c goes up the c grid? The paper claims control on average only; this asks it of every r.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from dymu_rt.core.preference import EVAL_ETA, grid_c, grid_r, n_active, sample_preferences
from dymu_rt.models.cost import CostModel


def _cost(cost, edge, r, c):
    with torch.no_grad():
        return cost.tree_cost(edge.architecture(torch.tensor(np.asarray(r, dtype=np.float32)),
                                                torch.tensor(float(c), dtype=torch.float32)))


def controllability(anchor, edge, cost=None, step: float = 0.1, c_step: float = 0.1,
                    n_dir: int = 1000, cs: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                    seed: int = 0, r_grid: Optional[list] = None, eta: float = EVAL_ETA) -> dict:
    """Range, c-ratio and per-r monotone share of ``edge``'s trees (see the module doc)."""
    cost = cost or CostModel(anchor)
    n = anchor.num_tasks
    full = cost.full_cost()
    rs = r_grid if r_grid is not None else [tuple(float(v) for v in r) for r in grid_r(n, step)]
    c_values = [float(c) for c in grid_c(c_step)]
    per_r, all_macs = [], []
    for r in rs:
        macs = [_cost(cost, edge, r, c).macs for c in c_values]
        all_macs += macs
        per_r.append({"r": list(r), "gmacs": [m / 1e9 for m in macs],
                      "non_increasing": bool(all(b <= a for a, b in zip(macs, macs[1:])))})
    dir_rs = [q.r for q in sample_preferences(n, n_dir, np.random.default_rng(seed + 99), eta=eta)]
    multi = [n_active(r, n) >= 2 for r in dir_rs]
    by_c = {}
    for c in cs:
        costs = [_cost(cost, edge, r, c) for r in dir_rs]
        sel = [t.gmacs for t, m in zip(costs, multi) if m]
        by_c[str(c)] = {"gmacs": float(np.mean([t.gmacs for t in costs])),
                        "gmacs_multi_active": float(np.mean(sel)) if sel else None,
                        "params": float(np.mean([t.params for t in costs])),
                        "gflops_paper": float(np.mean([t.gflops_paper for t in costs]))}
    lo, hi = min(all_macs), max(all_macs)
    c0, c1 = by_c[str(cs[0])], by_c[str(cs[-1])]
    return {
        "anchor": full.as_dict(),
        "range": {"min_gmacs": lo / 1e9, "max_gmacs": hi / 1e9, "min_over_anchor": lo / full.macs,
                  "max_over_min": hi / lo},
        "dir_mean_by_c": by_c,
        "r_law": f"Dir({eta:g})", "multi_active_share": float(np.mean(multi)),
        "c_ratio_multi_active": (c1["gmacs_multi_active"] / c0["gmacs_multi_active"]
                                 if c0["gmacs_multi_active"] else None),
        "c_ratio": {"gmacs": c1["gmacs"] / c0["gmacs"], "params": c1["params"] / c0["params"],
                    "gflops_paper": c1["gflops_paper"] / c0["gflops_paper"]},
        "monotone_share": float(np.mean([p["non_increasing"] for p in per_r])),
        "grid": {"step": step, "c_step": c_step, "n_r": len(rs), "c_values": c_values, "n_dir": n_dir},
        "per_r": per_r,
    }
