"""Evaluate a trained controller over preferences (the paper's Tables 1-3 quantities).

For each evaluated preference (20 sampled r × c in {0, 1} by default, or a grid) the
edge hypernet gives the tree and the weight hypernet the BN deltas; we measure per-task
losses and metrics on the validation split, with and without the weight hypernet
("w/o adaptation"). Per c we report:

* HV: hypervolume of the loss vectors (minimization) against one reference point shared
  by every method of the table (default: 1.1 × the worst loss of any method per task);
* uniformity μ_r = 1 − KL(L̂ ‖ 1/N), averaged over the preferences;
* inference params and GMACs of the predicted trees averaged over ``n_cost`` preferences
  with r ~ Dir(0.2) (the training distribution);

and the same for the baselines: single-task (the anchor net, identity tree) and PHN-BN
(if trained). Controllability: mean params over c in {0, .25, .5, .75, 1}, and skewed
vs uniform r at the same c.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from dymu_rt.models.cost import CostModel
from dymu_rt.models.tree import topology_id
from dymu_rt.train.checkpoint import RunDir
from dymu_rt.train.common import make_split, make_tasks
from dymu_rt.train.evaluation import evaluate_tree
from dymu_rt.utils.progress import make_progress


def _loss_vector(metrics: dict, tasks) -> list[float]:
    return [metrics[t.name]["loss"] for t in tasks]


def _prefs(n_tasks: int, mode: str, n_r: int, cs: Sequence[float], step: Optional[str], seed: int):
    from dymu_rt.control.preference import Preference, grid, sample_preferences

    if mode == "grid":
        return grid(n_tasks, step or "0.25")
    rng = np.random.default_rng(seed)
    rs = [p.r for p in sample_preferences(n_tasks, n_r, rng)]
    return [Preference(tuple(float(v) for v in r), float(c)) for c in cs for r in rs]


@torch.no_grad()
def evaluate_controller(run_dir, mode: str = "sampled", n_r: int = 20, cs: Sequence[float] = (0.0, 1.0),
                        step: Optional[str] = None, n_val: Optional[int] = None, n_cost: int = 1000,
                        seed: int = 0, reference: Optional[Sequence[float]] = None,
                        progress: bool = True) -> dict:
    """Evaluate the run at ``run_dir``; returns a JSON-able report."""
    from dymu_rt.control.hypernets import count_params
    from dymu_rt.control.preference import sample_preferences
    from dymu_rt.evaluate.hypervolume import hypervolume
    from dymu_rt.evaluate.uniformity import uniformity

    run = RunDir(run_dir)
    preset, anchor, edge, weight = run.load_all()
    tasks = make_tasks(preset)
    n = len(tasks)
    data = run.read_config()["data"]
    val = make_split(preset, data, "val", n=n_val, seed=seed)
    cost = CostModel(anchor)
    prefs = _prefs(n, mode, n_r, cs, step, seed)

    rows = []
    cache: dict[tuple, dict] = {}
    with make_progress(disable=not progress) as bar:
        job = bar.add_task("evaluating preferences", total=len(prefs), info="")
        for p in prefs:
            r = torch.tensor(p.r, dtype=torch.float32)
            c = torch.tensor(p.c, dtype=torch.float32)
            parents = edge.architecture(r, c)
            tid = topology_id(parents)
            deltas = weight(r, c) if weight is not None else None
            m_adapt = evaluate_tree(anchor, tasks, val, parents, deltas) if deltas is not None else None
            if tid not in cache:      # w/o adaptation depends on the tree only
                cache[tid] = evaluate_tree(anchor, tasks, val, parents, None)
            tc = cost.tree_cost(parents)
            rows.append({"r": list(p.r), "c": p.c, "topology": tid, "parents": parents.tolist(),
                         "params": tc.params, "gmacs": tc.gmacs,
                         "metrics": m_adapt if m_adapt is not None else cache[tid],
                         "metrics_no_adaptation": cache[tid]})
            bar.update(job, advance=1, info=f"{len(cache)} trees")

    single = evaluate_tree(anchor, tasks, val, None, None)
    full = cost.full_cost()
    phn = None
    if run.stage_done("phn-bn"):
        from dymu_rt.train.phn import load_phn_bn

        model = load_phn_bn(run)
        phn_cost = cost.tree_cost(model.parents)
        phn_rows = []
        for p in prefs:
            r = torch.tensor(p.r, dtype=torch.float32)
            phn_rows.append(evaluate_tree(None, tasks, val, forward=lambda x, r=r: model(x, r)))
        phn = {"rows": phn_rows, "params": phn_cost.params, "gmacs": phn_cost.gmacs}

    # One reference point for every method's HV: 1.1 × the worst loss seen per task.
    all_losses = [_loss_vector(row["metrics"], tasks) for row in rows] + \
                 [_loss_vector(row["metrics_no_adaptation"], tasks) for row in rows] + \
                 [_loss_vector(single, tasks)] + ([_loss_vector(m, tasks) for m in phn["rows"]] if phn else [])
    ref = np.asarray(reference, dtype=float) if reference is not None else 1.1 * np.max(all_losses, axis=0)

    def summarize(loss_rows, rs):
        L = np.asarray(loss_rows, dtype=float)
        return {"hv": float(hypervolume(L, ref)),
                "uniformity": float(np.mean([uniformity(np.asarray(r), l) for r, l in zip(rs, L)]))}

    rng = np.random.default_rng(seed + 99)
    cost_rs = [q.r for q in sample_preferences(n, n_cost, rng)]

    def mean_cost(c_value: float) -> dict:
        params, gm = [], []
        for r in cost_rs:
            t = cost.tree_cost(edge.architecture(torch.tensor(r, dtype=torch.float32),
                                                 torch.tensor(c_value, dtype=torch.float32)))
            params.append(t.params)
            gm.append(t.gmacs)
        return {"params": float(np.mean(params)), "gmacs": float(np.mean(gm))}

    table = []
    c_values = sorted({row["c"] for row in rows})
    for c_value in c_values:
        sel = [row for row in rows if row["c"] == c_value]
        rs = [row["r"] for row in sel]
        mc = mean_cost(c_value)
        if weight is not None:
            table.append({"method": "DYMU (ours)", "c": c_value,
                          **summarize([_loss_vector(s["metrics"], tasks) for s in sel], rs), **mc})
        table.append({"method": "DYMU w/o adaptation", "c": c_value,
                      **summarize([_loss_vector(s["metrics_no_adaptation"], tasks) for s in sel], rs), **mc})
        if phn is not None:
            idx = [i for i, row in enumerate(rows) if row["c"] == c_value]
            table.append({"method": "PHN-BN", "c": c_value,
                          **summarize([_loss_vector(phn["rows"][i], tasks) for i in idx], rs),
                          "params": phn["params"], "gmacs": phn["gmacs"]})
    # Single-task is one point whatever r is: its HV is that of a single loss vector.
    table.append({"method": "single-task (anchor)", "c": None,
                  **summarize([_loss_vector(single, tasks)], [[1.0 / n] * n]),
                  "params": float(full.params), "gmacs": full.gmacs})

    control = {"mean_params_by_c": {}, "skewed_vs_uniform": {}}
    for c_value in (0.0, 0.25, 0.5, 0.75, 1.0):
        control["mean_params_by_c"][str(c_value)] = mean_cost(c_value)["params"]
        skew = [cost.tree_cost(edge.architecture(torch.tensor(np.eye(n)[i] * 0.85 + 0.15 / n, dtype=torch.float32),
                                                 torch.tensor(c_value))).params for i in range(n)]
        uni = cost.tree_cost(edge.architecture(torch.full((n,), 1.0 / n), torch.tensor(c_value))).params
        control["skewed_vs_uniform"][str(c_value)] = {"skewed_mean_params": float(np.mean(skew)),
                                                      "uniform_params": float(uni)}
    return {
        "run": str(run_dir), "preset": preset.name, "tasks": [t.name for t in tasks],
        "n_val": len(val), "reference_point": ref.tolist(), "table": table,
        "controllability": control, "single_task": single,
        "controller_params": {"edge_hypernet": count_params(edge),
                              "weight_hypernet": count_params(weight) if weight is not None else 0},
        "distinct_trees": len(cache), "preferences": rows,
        "units": {"gmacs": "GMACs = the paper's GFLOPs (fvcore convention); FLOPs = 2 x MACs"},
    }
