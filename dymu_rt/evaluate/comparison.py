"""Δ_T, the evaluation of AdaShare / DAG runs, and how a comparison is shown (table, PNG).

Δ_T (Choi & Im eqs. 10-11; AdaShare's Δ): per task, the mean relative change of every
metric against the single-task nets, sign flipped where lower is better, in percent;
Δ_T = the mean over tasks (:func:`dymu_rt.tasks.relative.delta_m`). The single-task nets
are a DYMU run's anchor (N independent streams, trained on the same data for as many
steps as a static method's warm-up and final stage by default). The comparison itself
(which builds every architecture into a bundle and times it through the runtime) is
:mod:`dymu_rt.app.compare`.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from dymu_rt.core.preference import EVAL_ETA, sample_preferences
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.controller import parse_reference, resolve_reference
from dymu_rt.evaluate.hypervolume import hypervolume
from dymu_rt.evaluate.plots import _pyplot, _save
from dymu_rt.evaluate.uniformity import uniformity
from dymu_rt.models.graph import graph_cost, materialize_graph
from dymu_rt.tasks.relative import delta_m
from dymu_rt.run.layout import RunDir, method_of
from dymu_rt.training.common import make_split, make_tasks
from dymu_rt.training.evaluation import evaluate_tree
from dymu_rt.training.phn import load_phn_bn
from dymu_rt.core.io import atomic_write_json


def delta_t(mt: dict, st: dict, tasks) -> dict[str, Any]:
    """{"mean": Δ_T, "per_task": {task: Δ_{T_i}}, "skipped": [...]} of metrics ``mt``
    against single-task ``st``: every metric of known direction both report; a metric
    whose single-task value is 0 (a relative change is undefined) is skipped and listed."""
    per, skipped = {}, []
    for t in tasks:
        names = [m for m in t.metric_directions if m in mt[t.name] and m in st[t.name]]
        keep = [m for m in names if float(st[t.name][m]) != 0.0]
        skipped += [f"{t.name}.{m}" for m in names if m not in keep]
        if not keep:
            raise ValidationError(f"task {t.name!r}: every single-task metric is 0; Δ_T is undefined")
        per[t.name] = delta_m({t.name: mt[t.name]}, {t.name: st[t.name]}, [t], metrics={t.name: keep})
    return {"mean": float(np.mean(list(per.values()))), "per_task": {k: float(v) for k, v in per.items()},
            "skipped": skipped}


def single_task_metrics(dymu_run, n_val: Optional[int], seed: int, val=None) -> dict:
    """Per-task validation metrics of a DYMU run's anchor (the N single-task streams)."""
    run = dymu_run if isinstance(dymu_run, RunDir) else RunDir(dymu_run)
    if "anchor" not in (run.read_config().get("stages") or {}):
        raise ValidationError(f"--single-task {run.path}: expected a DYMU run (its anchor = the single-task "
                              f"nets), got a {method_of(run)} run")
    preset = run.preset()
    anchor = run.load_anchor()
    val = val if val is not None else make_split(preset, run.read_config()["data"], "val", n=n_val, seed=seed)
    return evaluate_tree(anchor, make_tasks(preset), val, None, None)


def evaluate_static(run_dir, loaded, label: str, n_val: Optional[int] = None, seed: int = 0,
                    reference: Optional[Sequence[float]] = None, single_task: Optional[str] = None,
                    n_r: int = 20, progress: bool = True) -> dict:
    """``dymu-rt eval`` of an AdaShare / DAG run: metrics, HV and uniformity of its one loss
    vector (uniformity averaged over ``n_r`` sampled r), params, GMACs and Δ_T against the
    anchor of DYMU run ``single_task`` (``delta_t`` null without one). ``loaded``: the run's
    (preset, net, graph, forward x -> outputs), or a function returning them, and ``label``
    its table name, from its method
    (:meth:`dymu_rt.methods.adashare.AdaShare.evaluate` and the DAG's pass them)."""
    run = RunDir(run_dir)
    ref, ref_source = resolve_reference(run.preset(), reference)
    st_run = None
    if single_task is not None:
        st_run = RunDir(single_task)
        if st_run.preset().to_dict()["tasks"] != run.preset().to_dict()["tasks"] or \
                st_run.preset().name != run.preset().name:
            raise ValidationError(f"--single-task {single_task} is a run of preset '{st_run.preset().name}', "
                                  f"not '{run.preset().name}'")
    preset, net, graph, forward = loaded() if callable(loaded) else loaded
    tasks = make_tasks(preset)
    val = make_split(preset, run.read_config()["data"], "val", n=n_val, seed=seed)
    metrics = evaluate_tree(None, tasks, val, forward=forward, progress=progress, description="eval (val)")
    losses = np.asarray([metrics[t.name]["loss"] for t in tasks])
    if ref is None:
        ref = 1.1 * losses
    rs = [p.r for p in sample_preferences(len(tasks), n_r, np.random.default_rng(seed), eta=EVAL_ETA)]
    cost = graph_cost(materialize_graph(net, graph, preset.mean, preset.std), tuple(preset.input_size))
    dt = None
    if st_run is not None:
        single = single_task_metrics(st_run, n_val, seed, val=val)
        dt = {**delta_t(metrics, single, tasks), "single_task_run": str(single_task)}
    row = {"method": label, "c": None, "hv": float(hypervolume(losses[None], np.asarray(ref))),
           "uniformity": float(np.mean([uniformity(np.asarray(r), losses) for r in rs])), "n_points": 1,
           "outside_reference": int(not np.all(losses < ref)), "params": float(cost.params), "gmacs": cost.gmacs,
           "gflops_paper": cost.gflops_paper, "delta_t": None if dt is None else dt["mean"]}
    return {"run": str(run_dir), "method": method_of(run), "preset": preset.name, "tasks": [t.name for t in tasks],
            "n_val": len(val), "topology": graph.id, "reference_point": list(map(float, ref)),
            "reference_source": ref_source, "table": [row], "metrics": metrics, "delta_t": dt,
            "delta_t_note": None if dt is not None else
            "give --single-task DYMU_RUN (its anchor = the single-task nets) for Δ_T",
            "units": {"gmacs": "multiply-adds (conv + linear) / 1e9; FLOPs = 2 x MACs",
                      "gflops_paper": "the paper's GFLOPs: fvcore's count / 1e9 (dymu_rt.models.cost)",
                      "delta_t": "percent; positive = better than single-task"}}


def evaluate_static_run(run, loaded, label: str, n_val: Optional[int] = None, reference=None, seed: int = 0,
                        single_task=None, plots=None, grid=None, c_grid=None, c=None, trees=(),
                        progress: bool = True) -> dict:
    """The ``dymu-rt eval`` use case for an AdaShare / DAG run: options a fixed architecture
    cannot take are refused, :func:`evaluate_static` runs, ``report.json`` is written to
    ``plots`` (default ``RUN/eval``); returns the report."""
    for flag, value in (("--grid", grid), ("--c-grid", c_grid), ("--c", c), ("--tree", list(trees) or None)):
        if value is not None:
            raise ValidationError(f"{flag} does not apply to {run}: it holds one static architecture (no "
                                  "preferences to sweep)")
    if n_val is not None and (isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 1):
        raise ValidationError(f"--n-val {n_val}: expected an integer >= 1")
    ref = parse_reference(reference)
    report = evaluate_static(run, loaded, label, n_val=n_val, seed=seed, reference=ref,
                             single_task=None if single_task is None else str(single_task), progress=progress)
    out_dir = Path(plots) if plots is not None else Path(run) / "eval"
    atomic_write_json(out_dir / "report.json", report)
    return report


def dymu_delta_t(run_dir, cs: Sequence[float] = (0.0, 1.0), n_val: Optional[int] = None, seed: int = 0,
                 single: Optional[dict] = None) -> dict:
    """Δ_T of a DYMU run at uniform r for each c (its own anchor = the single-task nets),
    and of PHN-BN at uniform r when trained."""
    run = RunDir(run_dir)
    preset, anchor, edge, weight = run.load_all()
    tasks = make_tasks(preset)
    val = make_split(preset, run.read_config()["data"], "val", n=n_val, seed=seed)
    single = single if single is not None else evaluate_tree(anchor, tasks, val, None, None)
    n = len(tasks)
    r = torch.full((n,), 1.0 / n)
    out: dict[str, Any] = {"r": [1.0 / n] * n, "by_c": {}, "reference": "single-task anchor of this run"}
    for c in cs:
        ct = torch.tensor(float(c))
        m = evaluate_tree(anchor, tasks, val, edge.architecture(r, ct), weight(r, ct) if weight is not None else None)
        out["by_c"][f"{float(c):g}"] = delta_t(m, single, tasks)
    if run.stage_done("phn-bn"):
        phn = load_phn_bn(run)
        out["phn_bn"] = delta_t(evaluate_tree(None, tasks, val, forward=lambda x: phn(x, r)), single, tasks)
    return out


def plot_compare(report: dict, out) -> Path:
    """PNG: Δ_T against measured latency (p50) for every row of a comparison."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = {"single": "#555555", "PHN": "#8c564b", "DYMU": "#1f77b4", "AdaShare": "#d62728", "DAG": "#2ca02c"}
    rows = report["rows"]
    xs = [r["latency_ms"]["p50"] for r in rows]
    span = (max(xs) - min(xs)) or 1.0
    gmax = max(r["gmacs"] for r in rows)
    for i, row in enumerate(rows):
        x, y = row["latency_ms"]["p50"], row["delta_t"]["mean"]
        col = next((v for k, v in colors.items() if row["label"].startswith(k)), "#000000")
        if "retrain_of" in row:
            # The retrained tree (the paper's Δ_T): hollow marker, dotted line from its deployed tree.
            dep = next(r for r in rows if r["label"] == row["retrain_of"])
            ax.plot([dep["latency_ms"]["p50"], x], [dep["delta_t"]["mean"], y], ls=":", lw=1.0, color=col)
            ax.scatter([x], [y], s=30 + 400 * row["gmacs"] / gmax, facecolor="white", edgecolor=col,
                       linewidth=1.5, zorder=3)
        else:
            ax.scatter([x], [y], s=30 + 400 * row["gmacs"] / gmax, color=col, alpha=0.8, edgecolor="black",
                       linewidth=0.5)
        # Points close on the plot get their labels stacked apart, top to bottom in the
        # order of their Δ_T (rank = points of the cluster above this one), so each label
        # sits next to its own marker.
        ys = [r["delta_t"]["mean"] for r in rows]
        yspan = (max(ys) - min(ys)) or 1.0
        near = [j for j in range(len(rows)) if j != i and
                math.hypot((xs[j] - x) / span, (ys[j] - y) / yspan) < 0.15]
        rank = sum(1 for j in near if ys[j] > y or (ys[j] == y and j < i))
        # Labels of the right-most points go to their left, so they stay inside the axes.
        left = x > min(xs) + 0.65 * span
        # A retrained tree has its deployed tree's cost (named at that marker, joined by the
        # dotted line): a short label, so labels of trees close in Δ_T do not run over each other.
        text = ("retrained" if row["label"].startswith("DYMU") else row["label"]) if "retrain_of" in row else \
            f"{row['label']}: {row['params'] / 1e6:.2f} M, {row['gmacs']:.3f} GMACs"
        note = ax.annotate(text, (x, y),
                           textcoords="offset points", xytext=(-10 if left else 10, 6 - 16 * rank), fontsize=7,
                           ha="right" if left else "left",
                           arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#777777"})
        note.arrow_patch.set_visible(rank > 0)       # a leader line only for a label moved off its marker
    ax.axhline(0.0, color="#999999", lw=0.8, ls="--")
    lp = report["latency_protocol"]
    where = f"{lp.get('profile', 'x86-64-cpu')} {lp.get('precision', 'fp32')}"
    # the binding each row was timed in (dymu_rt.app.compare.BINDINGS), as the table says
    bound = sorted({r.get("binding") for r in rows} - {"static", None})
    how = f"DYMU rows {'/'.join(bound)}, the others static" if bound else "every row static"
    ax.set_xlabel(f"latency p50 (ms; dymu-rt runtime, {where}, {lp['threads']} thread(s), batch 1; "
                  f"{how})", fontsize=8)
    ax.set_ylabel("Δ_T vs single-task (%, higher is better)")
    retrained = any("retrain_of" in r for r in rows)
    ax.set_title(f"{report['preset']}: accuracy vs latency ({report['n_val']} val scenes; marker area ~ GMACs"
                 + ("; hollow: DYMU tree retrained as a static net, dotted to its deployed tree" if retrained else "")
                 + ")", fontsize=9 if not retrained else 8)
    ax.grid(alpha=0.3)
    _unoverlap_labels(fig, ax)
    return _save(fig, out)


def _unoverlap_labels(fig, ax) -> None:
    """Move each label that overlaps one above it down until it is free (top to bottom), with
    a leader line to its marker. The cluster stacking above only sees points that are close;
    long labels of points far apart in latency can still run into each other."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()

    def text_box(note):          # the text alone: an Annotation's own extent includes its leader line
        return Text.get_window_extent(note, renderer)

    placed = []
    for note in sorted(ax.texts, key=lambda n: -text_box(n).y1):
        for _ in range(len(ax.texts)):
            box = text_box(note)
            hit = next((p for p in placed if box.overlaps(p)), None)
            if hit is None:
                break
            note.xyann = (note.xyann[0], note.xyann[1] - (box.y1 - hit.y0 + 2) * 72.0 / fig.dpi)
            note.arrow_patch.set_visible(True)
        placed.append(text_box(note))


def compare_markdown(report: dict) -> str:
    """The comparison as a Markdown table (primary metric per task; the binding each row's
    latency was measured in, see :data:`dymu_rt.app.compare.BINDINGS`; with retrained rows
    (``compare --retrain``) a "retrained Δ_T %" column on each deployed DYMU row)."""
    names = report["tasks"]
    prim = report["primary"]
    # compare --retrain: the retrained tree's Δ_T beside the deployed tree's (the paper's Δ_T).
    retrained = any("retrain_of" in r for r in report["rows"])
    head = ["method", "Δ_T %"] + (["retrained Δ_T %"] if retrained else []) + \
        [f"{t} {prim[t]}" for t in names] + [f"Δ {t} %" for t in names] + \
        ["params (M)", "GMACs", "binding", "latency p50 ms", "training budget"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        beside = [f"{row['retrained_delta_t']:+.2f}" if "retrained_delta_t" in row else ""] if retrained else []
        cells = [row["label"], f"{row['delta_t']['mean']:+.2f}"] + beside + \
            [f"{row['metrics'][t][prim[t]]:.3f}" for t in names] + \
            [f"{row['delta_t']['per_task'][t]:+.2f}" for t in names] + \
            [f"{row['params'] / 1e6:.3f}", f"{row['gmacs']:.4f}", row.get("binding", "?"),
             f"{row['latency_ms']['p50']:.3f}", row.get("budget", "?")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["delta_t", "single_task_metrics", "evaluate_static", "evaluate_static_run", "dymu_delta_t",
           "plot_compare", "compare_markdown"]
