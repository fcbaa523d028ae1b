"""``dymu-rt compare``: every method of one preset side by side (the papers' tables, plus latency).

:func:`compare_runs` evaluates every method a set of runs of one preset holds — from the
DYMU run: single-task (anchor), PHN-BN (if trained; uniform r), DYMU at c = 0 and c = 1
(uniform r); and every AdaShare / DAG run — on the same validation scenes (Δ_T:
:func:`dymu_rt.evaluate.compare.delta_t`), and measures each architecture's latency on this
machine: the architecture is folded and exported as the bundles export it, and run by ONNX
Runtime (CPU, ``threads`` intra-op threads, batch 1, ORT_ENABLE_ALL, fully folded weights),
timed in interleaved rounds so that load from other processes hits every row alike; the
median is reported.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from dymu_rt.compile.architecture import materialize
from dymu_rt.compile.export import export_tree_model
from dymu_rt.compile.fold import fold_bn
from dymu_rt.errors import ValidationError
from dymu_rt.evaluate.compare import delta_t, method_label, static_forward
from dymu_rt.models.graph import graph_cost, materialize_graph
from dymu_rt.models.tree import identity_table
from dymu_rt.train.checkpoint import RunDir
from dymu_rt.train.common import make_split, make_tasks
from dymu_rt.train.evaluation import evaluate_tree
from dymu_rt.train.phn import load_phn_bn
from dymu_rt.train.static import method_of
from dymu_rt.utils.progress import make_progress


def _contenders(runs: Sequence[RunDir]) -> list[dict]:
    """Every row the runs hold: {label, method, forward, module (eval, unfolded), tasks}."""
    rows = []
    for run in runs:
        if method_of(run) == "dymu":
            preset, anchor, edge, weight = run.load_all()
            n = len(preset.tasks)
            rows.append({"label": "single-task", "run": str(run.path), "module": materialize(
                anchor, identity_table(anchor.num_layers, n)), "forward": lambda x, a=anchor: a(x)})
            if run.stage_done("phn-bn"):
                phn = load_phn_bn(run)
                r = torch.full((n,), 1.0 / n)
                rows.append({"label": "PHN-BN (uniform r)", "run": str(run.path),
                             "module": materialize(anchor, phn.parents, phn.hyper(r, torch.zeros(())).reshape(-1)),
                             "forward": lambda x, p=phn, r=r: p(x, r)})
            for c in (0.0, 1.0):
                r, ct = torch.full((n,), 1.0 / n), torch.tensor(c)
                parents = edge.architecture(r, ct)
                deltas = weight(r, ct).reshape(-1) if weight is not None else None
                rows.append({"label": f"DYMU c={c:g} (uniform r)", "run": str(run.path),
                             "module": materialize(anchor, parents, deltas),
                             "forward": lambda x, a=anchor, p=parents, d=deltas: a(x, p, d)})
        else:
            preset, net, graph, forward = static_forward(run)
            rows.append({"label": method_label(run), "run": str(run.path),
                         "module": materialize_graph(net, graph, preset.mean, preset.std), "forward": forward})
    return rows


def _check_same(runs: Sequence[RunDir]) -> None:
    if not runs:
        raise ValidationError("compare: give at least one run directory")
    first = runs[0].read_config()
    for run in runs[1:]:
        cfg = run.read_config()
        if cfg["preset"]["name"] != first["preset"]["name"]:
            raise ValidationError(f"compare: {run.path} is a run of preset '{cfg['preset']['name']}', but "
                                  f"{runs[0].path} is '{first['preset']['name']}'; compare runs of one preset")
        if cfg.get("data") != first.get("data"):
            raise ValidationError(f"compare: {run.path} was trained on '{cfg.get('data')}', {runs[0].path} on "
                                  f"'{first.get('data')}'")
    if sum(method_of(r) == "dymu" for r in runs) != 1:
        raise ValidationError("compare: give exactly one DYMU run (its anchor is the single-task baseline of Δ_T)")
    for r in runs:
        done = "weight" if method_of(r) == "dymu" else "final"
        if not r.stage_done(done):
            raise ValidationError(f"compare: {r.path} has not finished training (stage '{done}')")


def _time_rows(rows: list[dict], input_size, threads: int, rounds: int, iters: int, warmup: int,
               progress) -> None:
    """Fold + export each row's module, then time all of them in interleaved rounds."""
    import onnxruntime as ort

    h, w = input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    sessions = []
    for row in rows:
        model = export_tree_model(fold_bn(row["module"]), (h, w), list(row["module"].task_names))
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for _ in range(warmup):
            sess.run(None, {"image": x})
        sessions.append(sess)
        row["times"] = []
    job = progress.add_task("latency (interleaved rounds)", total=rounds, info="")
    for _ in range(rounds):
        for row, sess in zip(rows, sessions):
            for _ in range(iters):
                t0 = time.perf_counter()
                sess.run(None, {"image": x})
                row["times"].append(1e3 * (time.perf_counter() - t0))
        progress.update(job, advance=1)
    for row in rows:
        t = np.asarray(row.pop("times"))
        row["latency_ms"] = {"p50": float(np.median(t)), "p90": float(np.percentile(t, 90)), "n": int(t.size)}


def compare_runs(run_dirs: Sequence, n_val: Optional[int] = None, seed: int = 0, threads: int = 1,
                 rounds: int = 10, iters: int = 20, warmup: int = 10, progress: bool = True) -> dict:
    """Every method of ``run_dirs`` (one DYMU run + any AdaShare / DAG runs of the same preset)
    side by side: Δ_T, per-task metrics, params, GMACs, measured latency. JSON-able."""
    for name, v, lo in (("threads", threads, 1), ("rounds", rounds, 1), ("iters", iters, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValidationError(f"--{name} {v!r} is not valid; expected an integer >= {lo}")
    runs = [RunDir(d) for d in run_dirs]
    _check_same(runs)
    preset = runs[0].preset()
    tasks = make_tasks(preset)
    torch.set_num_threads(threads)
    val = make_split(preset, runs[0].read_config()["data"], "val", n=n_val, seed=seed)
    rows = _contenders(runs)
    with make_progress(disable=not progress) as bar:
        job = bar.add_task("evaluating methods", total=len(rows), info="")
        for row in rows:
            with torch.no_grad():
                row["metrics"] = evaluate_tree(None, tasks, val, forward=row["forward"])
            with torch.no_grad():
                cost = graph_cost(row["module"], tuple(preset.input_size))
            row.update(params=cost.params, macs=cost.macs, gmacs=cost.gmacs, gflops_paper=cost.gflops_paper)
            bar.update(job, advance=1, info=row["label"])
        single = next(r for r in rows if r["label"] == "single-task")["metrics"]
        for row in rows:
            row["delta_t"] = delta_t(row["metrics"], single, tasks)
        _time_rows(rows, tuple(preset.input_size), threads, rounds, iters, warmup, bar)
    out = []
    for row in rows:
        out.append({k: row[k] for k in ("label", "run", "metrics", "delta_t", "params", "macs", "gmacs", "gflops_paper",
                                            "latency_ms")})
    return {"preset": preset.name, "tasks": [t.name for t in tasks], "n_val": len(val), "seed": seed,
            "primary": {t.name: t.primary_metric for t in tasks},
            "latency_protocol": {"backend": "onnxruntime (CPU, ORT_ENABLE_ALL, folded graph)", "threads": threads,
                                 "batch": 1, "rounds": rounds, "iters_per_round": iters, "warmup": warmup,
                                 "statistic": "median over all timed runs, rounds interleaved across methods"},
            "rows": out,
            "units": {"delta_t": "percent vs single-task, positive = better (Choi & Im eqs. 10-11)",
                      "gmacs": "multiply-adds / 1e9 (conv + linear)",
                      "gflops_paper": "the paper's GFLOPs: fvcore's count / 1e9 (dymu_rt.models.cost)"}}

