"""Evaluate a trained controller over preferences (the paper's Tables 1-3 quantities).

For each evaluated preference (20 sampled r × c in {0, 1} by default, or a grid) the
edge hypernet gives the tree and the weight hypernet the BN deltas; we measure per-task
losses and metrics on the validation split, with and without the weight hypernet
("w/o adaptation"). Per c we report:

* HV: hypervolume of the loss vectors (minimization) against one reference point shared
  by every method of the table: the caller's, else the preset's fixed ``hv_reference``
  (comparable across runs of a benchmark), else 1.1 × the worst loss of any method per
  task (data-dependent: comparable within one report only). The report names which
  (``reference_source``) and counts loss vectors outside the reference box;
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

from dymu_rt.control.hypernets import count_params
from dymu_rt.core.preference import EVAL_ETA, Preference, grid, n_active, parse_c, parse_step, sample_preferences
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.hypervolume import hypervolume
from dymu_rt.evaluate.uniformity import uniformity
from dymu_rt.models.cost import CostModel
from dymu_rt.models.presets import PRESETS
from dymu_rt.core.tree import topology_id
from dymu_rt.run.layout import RunDir
from dymu_rt.training.common import make_split, make_tasks
from dymu_rt.training.evaluation import evaluate_tree
from dymu_rt.training.phn import load_phn_bn
from dymu_rt.utils.progress import make_progress


def _loss_vector(metrics: dict, tasks) -> list[float]:
    return [metrics[t.name]["loss"] for t in tasks]


def _prefs(n_tasks: int, mode: str, n_r: int, cs: Sequence[float], step: Optional[str],
           c_step: Optional[str], seed: int, eta: float = EVAL_ETA):

    if mode == "grid":
        return grid(n_tasks, step or "0.25", c_step)
    rng = np.random.default_rng(seed)
    rs = [p.r for p in sample_preferences(n_tasks, n_r, rng, eta=eta)]
    return [Preference(tuple(float(v) for v in r), float(c)) for c in cs for r in rs]


def _positive_int(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValidationError(f"{what} = {value!r}: expected an integer >= {minimum}")
    return int(value)


DATA_REFERENCE = "1.1 x worst loss seen (data-dependent: not comparable across runs)"


def parse_reference(reference) -> Optional[list[float]]:
    """``--reference`` as given (comma-separated text or a sequence) as floats, or None;
    :func:`resolve_reference` checks the values against the preset."""
    if reference is None:
        return None
    try:
        return [float(v) for v in (reference.split(",") if isinstance(reference, str) else reference)]
    except ValueError:
        raise ValidationError(f"--reference {reference!r}: expected comma-separated numbers") from None


def resolve_reference(preset, reference: Optional[Sequence[float]] = None) -> tuple[Optional[np.ndarray], str]:
    """The HV reference point to use for ``preset`` and where it comes from.

    ``reference`` (one finite loss > 0 per task) wins; else the preset's ``hv_reference``
    (for runs stored before presets had one, the registered preset of the same name and
    tasks); else (None, :data:`DATA_REFERENCE`) — the caller then takes 1.1 × the worst
    loss it sees. Raises ValidationError for a reference of the wrong length or values.
    """

    n = len(preset.tasks)
    names = ",".join(t.name for t in preset.tasks)
    if reference is not None:
        source, values = "user", reference
    else:
        values = getattr(preset, "hv_reference", None)
        known = PRESETS.get(preset.name)
        if values is None and known is not None and [t.name for t in known.tasks] == [t.name for t in preset.tasks]:
            values = known.hv_reference
        if values is None:
            return None, DATA_REFERENCE
        source = f"preset {preset.name}"
    try:
        ref = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"HV reference {values!r}: expected {n} numbers, one loss per task ({names})") from None
    if ref.size != n:
        raise ValidationError(f"HV reference has {ref.size} values, expected {n}: one loss per task ({names})")
    if not (np.isfinite(ref).all() and (ref > 0).all()):
        raise ValidationError(f"HV reference {ref.tolist()}: expected finite losses > 0, one per task ({names})")
    return ref, source


@torch.no_grad()
def evaluate_controller(run_dir, mode: str = "sampled", n_r: int = 20, cs: Optional[Sequence[float]] = None,
                        step: Optional[str] = None, n_val: Optional[int] = None, n_cost: int = 1000,
                        seed: int = 0, reference: Optional[Sequence[float]] = None,
                        progress: bool = True, c_step: Optional[str] = None, eta: float = EVAL_ETA) -> dict:
    """Evaluate the run at ``run_dir``; returns a JSON-able report.

    ``mode="sampled"``: ``n_r`` task preferences r ~ Dir(eta) (default 1: uniform on S_N, the
    paper's protocol; cost over ``n_cost`` r of the same law), each with every c of ``cs``
    (default 0 and 1). ``mode="grid"``: the preference grid of ``step`` (default 0.25)
    with c step ``c_step`` (default ``step``); ``cs`` does not apply there. Every argument
    is validated before any evaluation (ValidationError with one line).
    """

    if mode not in ("sampled", "grid"):
        raise ValidationError(f"mode = {mode!r}: expected 'sampled' or 'grid'")
    if mode == "grid":
        if cs is not None:
            raise ValidationError("cs applies to sampled preferences only; for a grid give c_step "
                                  "(CLI: --c-grid) instead")
        parse_step(step or "0.25", "step")
        if c_step is not None:
            parse_step(c_step, "c_step")
    else:
        if step is not None or c_step is not None:
            raise ValidationError("step/c_step apply to mode='grid' only")
        _positive_int(n_r, "n_r")
        cs = (0.0, 1.0) if cs is None else cs
        if isinstance(cs, (str, bytes)) or not hasattr(cs, "__iter__"):
            raise ValidationError(f"cs = {cs!r}: expected a sequence of resource preferences in [0, 1]")
        cs = list(dict.fromkeys(parse_c(v) for v in cs))
        if not cs:
            raise ValidationError("cs is empty: expected at least one resource preference in [0, 1]")
    _positive_int(n_cost, "n_cost")
    if n_val is not None:
        _positive_int(n_val, "n_val")

    run = RunDir(run_dir)
    ref, ref_source = resolve_reference(run.preset(), reference)   # refuse before evaluating
    preset, anchor, edge, weight = run.load_all()
    tasks = make_tasks(preset)
    n = len(tasks)
    data = run.read_config()["data"]
    val = make_split(preset, data, "val", n=n_val, seed=seed)
    cost = CostModel(anchor)
    prefs = _prefs(n, mode, n_r, cs, step, c_step, seed, eta)

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
                         "params": tc.params, "gmacs": tc.gmacs, "gflops_paper": tc.gflops_paper,
                         "metrics": m_adapt if m_adapt is not None else cache[tid],
                         "metrics_no_adaptation": cache[tid]})
            bar.update(job, advance=1, info=f"{len(cache)} trees")

    single = evaluate_tree(anchor, tasks, val, None, None)
    full = cost.full_cost()
    phn = None
    if run.stage_done("phn-bn"):

        model = load_phn_bn(run)
        phn_cost = cost.tree_cost(model.parents, getattr(model, "head_streams", None))
        phn_rows = []
        for p in prefs:
            r = torch.tensor(p.r, dtype=torch.float32)
            phn_rows.append(evaluate_tree(None, tasks, val, forward=lambda x, r=r: model(x, r)))
        phn = {"rows": phn_rows, "params": phn_cost.params, "gmacs": phn_cost.gmacs,
               "gflops_paper": phn_cost.gflops_paper}
        for row, m in zip(rows, phn_rows):
            row["metrics_phn_bn"] = m

    if ref is None:
        # Data-dependent fallback, one point for every method: 1.1 × the worst loss seen per task.
        all_losses = [_loss_vector(row["metrics"], tasks) for row in rows] + \
                     [_loss_vector(row["metrics_no_adaptation"], tasks) for row in rows] + \
                     [_loss_vector(single, tasks)] + ([_loss_vector(m, tasks) for m in phn["rows"]] if phn else [])
        ref = 1.1 * np.max(all_losses, axis=0)

    def summarize(loss_rows, rs):
        L = np.asarray(loss_rows, dtype=float)
        return {"hv": float(hypervolume(L, ref)),
                "uniformity": float(np.mean([uniformity(np.asarray(r), l) for r, l in zip(rs, L)])),
                "n_points": int(len(L)), "outside_reference": int(np.sum(~np.all(L < ref, axis=1)))}

    rng = np.random.default_rng(seed + 99)
    cost_rs = [q.r for q in sample_preferences(n, n_cost, rng, eta=eta)]
    multi = [n_active(r, n) >= 2 for r in cost_rs]

    def mean_cost(c_value: float) -> dict:
        params, gm, gp = [], [], []
        for r in cost_rs:
            t = cost.tree_cost(edge.architecture(torch.tensor(r, dtype=torch.float32),
                                                 torch.tensor(c_value, dtype=torch.float32)))
            params.append(t.params)
            gm.append(t.gmacs)
            gp.append(t.gflops_paper)
        sel = [g for g, m in zip(gm, multi) if m]
        return {"params": float(np.mean(params)), "gmacs": float(np.mean(gm)),
                "gflops_paper": float(np.mean(gp)),
                # The >= 2-active-task part (r_i >= 0.6/N for two tasks or more): the only
                # preferences where c acts (L_active is 0 with one active task).
                "gmacs_multi_active": float(np.mean(sel)) if sel else None,
                "multi_active_share": float(np.mean(multi))}

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
                          "params": phn["params"], "gmacs": phn["gmacs"],
                          "gflops_paper": phn["gflops_paper"]})
    # Single-task is one point whatever r is: its HV is that of a single loss vector.
    table.append({"method": "single-task (anchor)", "c": None,
                  **summarize([_loss_vector(single, tasks)], [[1.0 / n] * n]),
                  "params": float(full.params), "gmacs": full.gmacs, "gflops_paper": full.gflops_paper})

    control = {"mean_params_by_c": {}, "mean_gmacs_by_c": {}, "mean_gmacs_multi_active_by_c": {},
               "skewed_vs_uniform": {}, "r_law": f"Dir({eta:g})", "n_cost": n_cost}
    for c_value in (0.0, 0.25, 0.5, 0.75, 1.0):
        mc = mean_cost(c_value)
        control["mean_params_by_c"][str(c_value)] = mc["params"]
        control["mean_gmacs_by_c"][str(c_value)] = mc["gmacs"]
        control["mean_gmacs_multi_active_by_c"][str(c_value)] = mc["gmacs_multi_active"]
        skew = [cost.tree_cost(edge.architecture(torch.tensor(np.eye(n)[i] * 0.85 + 0.15 / n, dtype=torch.float32),
                                                 torch.tensor(c_value))).params for i in range(n)]
        uni = cost.tree_cost(edge.architecture(torch.full((n,), 1.0 / n), torch.tensor(c_value))).params
        control["skewed_vs_uniform"][str(c_value)] = {"skewed_mean_params": float(np.mean(skew)),
                                                      "uniform_params": float(uni)}
    return {
        "run": str(run_dir), "preset": preset.name, "tasks": [t.name for t in tasks],
        "n_val": len(val), "reference_point": ref.tolist(), "reference_source": ref_source,
        "table": table,
        "controllability": control, "single_task": single,
        "controller_params": {"edge_hypernet": count_params(edge),
                              "weight_hypernet": count_params(weight) if weight is not None else 0,
                              "total": count_params(edge) + (count_params(weight) if weight is not None else 0)},
        "distinct_trees": len(cache), "preferences": rows,
        "units": {"gmacs": "GMACs = conv + linear multiply-accumulates / 1e9; FLOPs = 2 x MACs",
                  "gflops_paper": "the paper's GFLOPs: fvcore's count (MACs + BN, upsampling, pooling) / 1e9"},
    }
