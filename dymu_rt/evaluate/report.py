"""Pictures of a controller evaluation (PNG): resource map, trees, controllability.

* ``resource_map.png``: GMACs of the edge hypernet's tree over a dense simplex grid (step
  0.05 for N = 3) for c in {0, 0.25, 0.5, 0.75, 1}, as ternary filled contours (the
  paper's Figure 5, :func:`dymu_rt.evaluate.plots.plot_resource_usage`).
* ``resource_map_points.png``: the same grid points uninterpolated, coloured by their
  tree's GMACs (the bundle resource-map code): topology changes are discrete, and a
  contour smooths over them.
* ``trees.png``: the predicted trees for chosen (r, c) (``dymu-rt eval --tree``), or by
  default for uniform and skewed r at c = 0 and 1 (``dymu_rt.evaluate.plots``).
* ``controllability.png``: per task, its validation loss against its preference r_i, one
  colour per c (the marginal controllability curves, ``dymu_rt.evaluate.plots``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from dymu_rt.core.preference import Preference, grid_r, make_preference
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.comparison import dymu_delta_t
from dymu_rt.evaluate.controller import evaluate_controller, parse_reference, resolve_reference
from dymu_rt.evaluate.plots import plot_controllability, plot_resource_usage, plot_trees
from dymu_rt.evaluate.resource_map import plot_resource_map
from dymu_rt.models.cost import CostModel
from dymu_rt.core.tree import topology_id
from dymu_rt.run.layout import RunDir
from dymu_rt.core import units
from dymu_rt.core.io import atomic_write_json


def dense_resource_table(edge, cost, task_names, step: str = "0.05",
                         cs=(0.0, 0.25, 0.5, 0.75, 1.0)) -> dict[str, Any]:
    """A manifest-like point table (points, topologies, tasks, grid) of tree GMACs."""
    points, tops = [], {}
    for r in grid_r(len(task_names), step):
        rt = torch.tensor([float(v) for v in r], dtype=torch.float32)
        for c in cs:
            p = edge.architecture(rt, torch.tensor(float(c)))
            tid = topology_id(p)
            if tid not in tops:
                tops[tid] = {"macs": cost.tree_cost(p).macs}
            points.append({"r": [float(v) for v in r], "c": float(c), "topology": tid})
    return {"points": points, "topologies": tops, "tasks": [{"name": n} for n in task_names],
            "grid": {"step": float(Fraction(step))},
            "preset": "controller"}


def parse_tree_spec(spec: str, n_tasks: int):
    """A ``--tree`` value "R;C" (e.g. "0.6,0.2,0.2;0.5") as a validated Preference."""
    if not isinstance(spec, str) or spec.count(";") != 1:
        raise ValidationError(f"--tree {spec!r}: expected 'R;C' with R one preference per task "
                              f"(N={n_tasks}, summing to 1) and C in [0, 1], e.g. "
                              f"\"{','.join(['%.3g' % (1 / n_tasks)] * n_tasks)};0.5\"")
    r, c = spec.split(";")
    return make_preference(r.strip(), c.strip(), n_tasks)


def _default_tree_picks(names: list[str]) -> list[tuple[str, np.ndarray, float]]:
    n = len(names)
    picks = [("uniform r, c = 0", np.full(n, 1.0 / n), 0.0), ("uniform r, c = 1", np.full(n, 1.0 / n), 1.0)]
    skew = np.full(n, 0.1 / max(1, n - 1))
    skew[0] = 0.9
    picks += [(f"r = 0.9 {names[0]}, c = 0", skew, 0.0), (f"r = 0.9 {names[0]}, c = 1", skew, 1.0)]
    return picks


def write_eval_plots(run_dir, report: dict[str, Any], out_dir: Path, trees=None) -> list[str]:
    """Write the evaluation PNGs under ``out_dir``; returns their paths.

    ``trees``: preferences (:class:`~dymu_rt.core.preference.Preference`, or "R;C"
    strings) whose predicted trees ``trees.png`` draws; default: uniform and skewed r at
    c = 0 and 1. Each drawn tree is also recorded in ``report["trees"]`` (r, c, parent
    table, topology id, params, GMACs).
    """

    out_dir = Path(out_dir)
    run = RunDir(run_dir)
    names = report["tasks"]
    n = len(names)
    if trees:
        prefs = [parse_tree_spec(t, n) if isinstance(t, str) else t for t in trees]
        for p in prefs:
            if not isinstance(p, Preference) or len(p.r) != n:
                raise ValidationError(f"trees: {p!r} is not a preference over the run's {n} tasks")
        picks = [(f"r = ({', '.join(f'{v:g}' for v in p.r)}), c = {p.c:g}", np.asarray(p.r), p.c) for p in prefs]
    else:
        picks = _default_tree_picks(names)
    out_dir.mkdir(parents=True, exist_ok=True)
    anchor, edge = run.load_anchor(), run.load_edge_hypernet()
    cost = CostModel(anchor)
    title = f"{report['preset']}: GMACs (conv+linear MACs) of the predicted tree"
    table = dense_resource_table(edge, cost, names, "0.05" if n == 3 else "0.25")
    tops = table["topologies"]
    usage = [(p["r"], p["c"], units.gmacs(tops[p["topology"]]["macs"])) for p in table["points"]]
    files = [plot_resource_usage(usage, out_dir / "resource_map.png", task_names=names,
                                 value_label="GMACs", title=title),
             plot_resource_map(table, out_dir / "resource_map_points.png", title=title + " (grid points)")]
    drawn, info = [], []
    for label, r, c in picks:
        parents = edge.architecture(torch.tensor(r, dtype=torch.float32), torch.tensor(float(c)))
        tc = cost.tree_cost(parents)
        drawn.append((label, parents))
        info.append({"r": [float(v) for v in r], "c": float(c), "parents": parents.tolist(),
                     "topology": topology_id(parents), "params": tc.params, "gmacs": tc.gmacs})
    report["trees"] = info
    files.append(plot_trees(drawn, out_dir / "trees.png", task_names=names,
                            title="predicted trees (pruned nodes hollow, cross-task edges red)"))
    rows = [(row["r"], row["c"], [row["metrics"][t]["loss"] for t in names]) for row in report["preferences"]]
    files.append(plot_controllability(rows, out_dir / "controllability.png", task_names=names))
    return [str(f) for f in files]


def evaluate_run(run, grid: Optional[str] = None, c_grid: Optional[str] = None, n_r: int = 20,
                 c: Optional[str | Sequence[float]] = None, n_val: Optional[int] = None, n_cost: int = 1000,
                 reference: Optional[str | Sequence[float]] = None, trees: Sequence[str] = (),
                 plots: Optional[Path] = None, seed: int = 0, progress: bool = True,
                 single_task=None, eta: Optional[float] = None) -> dict[str, Any]:
    """The ``dymu-rt eval`` use case: evaluate a run's controller, draw its plots, write
    ``report.json``; returns the report (its ``plots`` key lists the PNGs).

    Every argument is checked before the (long) evaluation starts. ``grid`` / ``c_grid``:
    evaluate a preference grid of these steps; otherwise ``n_r`` sampled r at each c of
    ``c`` (comma-separated text or numbers; default 0, 1). ``reference``: the HV
    reference point (comma-separated text or numbers, one loss per task). ``trees``: "R;C"
    preferences whose predicted trees are drawn. ``plots``: the output folder (default
    ``RUN/eval``).
    """

    if single_task is not None:
        raise ValidationError("--single-task applies to AdaShare/DAG runs; a DYMU run's own anchor is its "
                              "single-task reference")
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 < eta < float("inf")):
        raise ValidationError(f"--eta {eta}: expected a Dirichlet concentration > 0 (1 = uniform on the simplex)")
    for flag, value in (("--n-r", n_r), ("--n-cost", n_cost), ("--n-val", n_val)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValidationError(f"{flag} {value}: expected an integer >= 1")
    if grid is not None and c is not None:
        raise ValidationError("--c applies to sampled preferences; with --grid give the c step as --c-grid")
    if grid is None and c_grid is not None:
        raise ValidationError("--c-grid applies to --grid only; for sampled preferences use --c")
    cs = None
    if grid is None:
        cs = [v for v in (c if c is not None else "0,1").split(",") if v.strip()] if isinstance(c, (str, type(None))) \
            else list(c)
        if not cs:
            raise ValidationError(f"--c {c!r}: expected comma-separated values in [0, 1]")
    ref = parse_reference(reference)
    preset = RunDir(run).preset()
    resolve_reference(preset, ref)
    picks = [parse_tree_spec(t, len(preset.tasks)) for t in trees or []]
    report = evaluate_controller(run, mode="grid" if grid else "sampled", n_r=n_r, cs=cs, step=grid,
                                 c_step=c_grid, n_val=n_val, n_cost=n_cost, seed=seed, reference=ref,
                                 progress=progress, **({} if eta is None else {"eta": eta}))
    out_dir = Path(plots) if plots is not None else Path(run) / "eval"
    report["plots"] = write_eval_plots(run, report, out_dir, trees=picks)
    # Δ_T (Choi & Im eqs. 10-11) at uniform r for c = 0 and 1, against this run's anchor.
    report["delta_t"] = dymu_delta_t(run, (0.0, 1.0), n_val=n_val, seed=seed, single=report["single_task"])
    atomic_write_json(out_dir / "report.json", report)
    return report
