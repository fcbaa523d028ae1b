"""``dymu-rt compare``: every method of one preset side by side (the papers' tables, plus latency).

:func:`compare_runs` evaluates every method a set of runs of one preset holds — from the
DYMU run: single-task (its anchor), PHN-BN (if trained; uniform r), DYMU at c = 0 and c = 1
(uniform r); and every AdaShare / DAG run — on the same validation scenes (Δ_T:
:func:`dymu_rt.evaluate.comparison.delta_t`), with the params and GMACs of each architecture
(:func:`dymu_rt.models.graph.graph_cost`).

**Latency is what the deployed runtime measures.** Every row is built, by the product's own
build code, into the bundle its method deploys as (in a temporary folder), opened with
:class:`dymu_rt.runtime.Runtime` on the ``x86-64-cpu`` profile (``--profile``: another CPU
profile, e.g. ``x86-64-cpu-openvino``) with ``threads`` intra-op threads, and timed through :meth:`Runtime.timed_call <dymu_rt.runtime.Runtime.timed_call>`,
the call ``dymu-rt profile`` times (batch 1, FP32, ONNX Runtime ORT_ENABLE_ALL). The
binding each row was timed in is in its ``timed`` record and the table's ``binding`` column:

* **DYMU c=0 / c=1** — ``folded``: the DYMU run's grid bundle
  (:func:`dymu_rt.compile.build.build_bundle`, r on the 1/N grid so that uniform r is a
  grid point, c in {0, 1}); the runtime is switched with ``set_preference(uniform r, c)``
  exactly as ``dymu-rt run`` does, and the topology it picks is checked to be the tree
  the row was evaluated with. What is timed is the runtime's steady state: the second tier's
  folded engine of that preference (its BN folded into the convs, fully optimized; the
  runtime opened with ``second_tier="sync"`` so it is there when timing starts;
  docs/runtime-tiers.md). A switch itself returns on the instant tier (BN scale/shift fed
  as inputs) before the folded engine is swapped in.
* **single-task, PHN-BN, AdaShare, DAG** — ``static``: fixed architectures, each built as
  a static bundle (:func:`dymu_rt.compile.static.write_static_bundle`): one graph with
  every BN folded into its conv, nothing bound per preference. The single-task row is the
  anchor's identity tree (:func:`dymu_rt.models.graph.lower_tree`); the PHN-BN row is its
  shared tree (every head on stream 0's top node) with the BN its hypernet gives at
  uniform r folded in — the product has no r-switched PHN-BN bundle, so this row does not
  include the affine scale/shift a PHN-BN deployment that switches r would add.

* **DYMU c=0 / c=1 retrained, single-task retrained (control)** (``--retrain``, the paper's
  Δ_T, DYMU Table 5 / A-1) — ``static``: the uniform-r tree (the identity tree for the
  control) trained again as a static net (:mod:`dymu_rt.train.retrain`), lowered with
  :func:`~dymu_rt.models.graph.lower_tree` and built like the other fixed rows.

All rows are timed in interleaved rounds (:func:`dymu_rt.runtime.latency.time_interleaved`:
each row runs ``iters`` times per round, the rounds cycle through the rows) so that load
from other processes hits every row alike; the median over all rounds is reported.
"""

from __future__ import annotations

import hashlib
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dymu_rt.backends.devices import load_profile, with_threads
from dymu_rt.compile.architecture import Architecture, materialize, topology_salt, with_bn_deltas
from dymu_rt.compile.build import build_bundle
from dymu_rt.compile.static import write_static_bundle
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.comparison import delta_t, method_label, static_forward
from dymu_rt.models.graph import graph_cost, lower_tree, materialize_graph
from dymu_rt.core.tree import identity_table
from dymu_rt.runtime import Runtime
from dymu_rt.runtime.latency import time_interleaved
from dymu_rt.train.checkpoint import RunDir
from dymu_rt.train.common import check_positive, make_split, make_tasks
from dymu_rt.train.evaluation import evaluate_tree
from dymu_rt.train.phn import load_phn_bn
from dymu_rt.train.retrain import check_init, retrain_uniform
from dymu_rt.train.setup import TrainSetup
from dymu_rt.train.static import method_of
from dymu_rt.utils.progress import make_progress

#: the device profile every row is timed on by default (its threads replaced by ``--threads``);
#: ``--profile`` picks another CPU profile (e.g. ``x86-64-cpu-openvino``)
PROFILE = "x86-64-cpu"

#: what each binding in the ``timed`` records means (also in the JSON report)
BINDINGS = {
    "folded": "DYMU grid bundle, steady state: set_preference as `dymu-rt run` does, then the runtime's second "
              "tier: that preference's folded engine (BN folded into every conv, fully optimized, own weights)",
    "affine": "DYMU grid bundle, instant tier: the topology's one engine (ONNX Runtime session, OpenVINO compiled "
              "model) runs each modulated conv raw, then the preference's BN scale/shift fed as inputs",
    "static": "static bundle: one graph, BN folded into every conv, nothing bound per preference",
}


def _state_id(module: torch.nn.Module) -> str:
    """sha256 of a module's tensors: what a static bundle of derived weights is identified by."""
    h = hashlib.sha256()
    for name, v in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def training_budget(run: RunDir, row: str) -> str:
    """The training steps behind a compare row (issue 22: every row states its budget).

    ``row``: single-task | phn-bn | dymu | static. Steps x batch of each stage; the shared
    pre-training (``anchor_init`` shared) trains one stream instead of N."""
    from dymu_rt.train.common import pretrain_steps

    if row == "static":
        # the lengths the run stored (its overrides included), not the preset's
        m, mc = method_of(run), run.read_config()["method_config"]
        return (f"{m}: warm-up {mc['warmup_steps']} + search {mc['search_steps']} + "
                f"{'retrain' if m == 'adashare' else 'fine-tune'} {mc['final_steps']} steps x batch {mc['batch']}")
    cfg = run.preset().train
    parts = []
    if cfg.anchor_init == "shared":
        parts.append(f"shared pre-training {pretrain_steps(cfg)}")
    parts.append(f"anchor {cfg.anchor_steps}")
    if row == "phn-bn":
        parts.append(f"PHN-BN {cfg.phn_steps or cfg.weight_steps}")
    elif row == "dymu":
        parts += [f"edge {cfg.edge_steps}", f"weight {cfg.weight_steps}"]
    return " + ".join(parts) + f" steps x batch {cfg.anchor_batch}" + \
        (f" (controller batch {cfg.controller_batch})" if row in ("phn-bn", "dymu") else "")


def retrain_budget(run: RunDir, summary: dict, control: bool = False) -> str:
    """The training-budget cell of a retrained tree: its own steps, then what found the tree
    (``control``: the single-task streams, trained before by the anchor stage)."""
    before = training_budget(run, "single-task" if control else "dymu").replace(" (controller batch",
                                                                                "; controller batch")
    return (f"retrain {summary['step']} steps x batch {summary['batch']} from "
            f"{'the anchor' if summary['init'] == 'anchor' else 'the anchor init (†)'} "
            f"({'after' if control else 'tree found by'}: {before.rstrip(')')})")


def _retrained_row(run: RunDir, preset, parents, net, summary: dict, of: str, label: str) -> dict:
    """The row of tree ``parents`` retrained as ``net`` (compare --retrain), beside row ``of``."""
    graph = lower_tree(net, parents)
    module = materialize_graph(net, graph, preset.mean, preset.std)
    return {"label": label, "run": str(run.path), "budget": retrain_budget(run, summary, of == "single-task"),
            "module": module,
            "retrain_of": of, "retrain": {k: summary[k] for k in ("step", "batch", "init")},
            "forward": lambda x, a=net, p=parents: a(x, p),
            "deploy": {"kind": "static", "method": "dymu-retrained", "graph": graph, "weights_id": _state_id(module)}}


def contenders(runs: Sequence[RunDir], retrained: Optional[dict] = None) -> list[dict]:
    """Every row the runs hold, in table order: {label, run, forward (x -> outputs, for the
    metrics), module (eval, unfolded: cost), deploy} — ``deploy`` says how the row is built
    and switched for timing: {"kind": "grid", "r", "c", "topology"} or {"kind": "static",
    "method", "graph", "weights_id"} (a static module is the ``module`` itself).

    ``retrained`` (``compare --retrain``): c -> (net, stage summary) of the DYMU tree of
    uniform r at c trained again as a static net (:func:`dymu_rt.train.retrain.retrain_tree`);
    its row follows the deployed tree's and names it in ``retrain_of``; "single-task" -> the
    identity tree retrained the same way (the control row: what the extra training alone gives)."""
    rows = []
    for run in runs:
        if method_of(run) == "dymu":
            preset, anchor, edge, weight = run.load_all()
            n = len(preset.tasks)
            salt = topology_salt(preset)
            ident = identity_table(anchor.num_layers, n)
            graph = lower_tree(anchor, ident)
            module = materialize_graph(anchor, graph, preset.mean, preset.std)
            rows.append({"label": "single-task", "run": str(run.path), "module": module,
                         "budget": training_budget(run, "single-task"),
                         "forward": lambda x, a=anchor: a(x),
                         "deploy": {"kind": "static", "method": "single-task", "graph": graph,
                                    "weights_id": _state_id(module)}})
            if retrained is not None and "single-task" in retrained:
                rows.append(_retrained_row(run, preset, ident, *retrained["single-task"], "single-task",
                                           "single-task retrained (control)"))
            r = torch.full((n,), 1.0 / n)
            if run.stage_done("phn-bn"):
                phn = load_phn_bn(run)
                with torch.no_grad():
                    deltas = phn.hyper(r, torch.zeros(())).reshape(-1)
                graph = lower_tree(phn.net, phn.parents, phn.head_streams)
                module = materialize_graph(with_bn_deltas(phn.net, deltas), graph, preset.mean, preset.std)
                rows.append({"label": "PHN-BN (uniform r)", "run": str(run.path), "module": module,
                             "budget": training_budget(run, "phn-bn"),
                             "forward": lambda x, p=phn, r=r: p(x, r),
                             "deploy": {"kind": "static", "method": "phn-bn", "graph": graph,
                                        "weights_id": _state_id(module)}})
            for c in (0.0, 1.0):
                ct = torch.tensor(c)
                with torch.no_grad():
                    parents = edge.architecture(r, ct)
                    deltas = weight(r, ct).reshape(-1) if weight is not None else None
                rows.append({"label": f"DYMU c={c:g} (uniform r)", "run": str(run.path),
                             "budget": training_budget(run, "dymu"),
                             "module": materialize(anchor, parents, deltas),
                             "forward": lambda x, a=anchor, p=parents, d=deltas: a(x, p, d),
                             "deploy": {"kind": "grid", "r": [1.0 / n] * n, "c": c,
                                        "topology": Architecture.from_parents(anchor, parents, salt).id}})
                if retrained is not None:
                    rows.append(_retrained_row(run, preset, parents, *retrained[c], rows[-1]["label"],
                                               f"DYMU c={c:g} retrained (uniform r)"))
        else:
            preset, net, graph, forward = static_forward(run)
            rows.append({"label": method_label(run), "run": str(run.path), "budget": training_budget(run, "static"),
                         "module": materialize_graph(net, graph, preset.mean, preset.std), "forward": forward,
                         "deploy": {"kind": "static", "method": method_of(run), "graph": graph,
                                    "weights_id": _state_id(net)}})
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


def open_runtimes(rows: list[dict], runs: Sequence[RunDir], folder: Path, threads: int,
                  progress=None, profile=PROFILE) -> tuple[list, list[Runtime]]:
    """Build every row's bundle into ``folder`` with the product's build code, open each with
    the Runtime (``profile``, default :data:`PROFILE`, ``threads`` threads) and switch it as a deployment
    would; returns ([(call, facts) per row], the runtimes to close). ``facts`` are
    :meth:`Runtime.timed_call`'s plus ``bundle`` (grid or static) and, for grid rows,
    ``evaluated_topology`` / ``matches_evaluated`` (the runtime ran the evaluated tree)."""
    folder = Path(folder)
    dymu = next(r for r in runs if method_of(r) == "dymu")
    preset = dymu.preset()
    n = len(preset.tasks)
    h, w = preset.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    profile = with_threads(profile, threads)
    job = None if progress is None else progress.add_task("building bundles", total=len(rows), info="")
    runtimes, out = [], []
    grid_rt = None
    for i, row in enumerate(rows):
        dep = row["deploy"]
        if dep["kind"] == "grid":
            if grid_rt is None:
                # r on the 1/N grid: uniform r is a grid point; c in {0, 1}: the two rows.
                build_bundle(dymu.path, folder / "dymu", step=Fraction(1, n), c_step=1, progress=False)
                grid_rt = Runtime.open(folder / "dymu", profile=profile, second_tier="sync")
                runtimes.append(grid_rt)
            grid_rt.set_preference(dep["r"], dep["c"])
            call, facts = grid_rt.timed_call(x)
            facts = {**facts, "bundle": "grid", "evaluated_topology": dep["topology"],
                     "matches_evaluated": facts["topology"] == dep["topology"]}
        else:
            path = folder / f"static-{i}"
            write_static_bundle(path, preset, RunDir(row["run"]).read_config(), row["module"], dep["graph"],
                                dep["method"], dep["weights_id"], row["run"], progress=False)
            rt = Runtime.open(path, profile=profile)
            runtimes.append(rt)
            rt.set_preference(None, None)
            call, facts = rt.timed_call(x)
            facts = {**facts, "bundle": "static"}
        out.append((call, facts))
        if progress is not None:
            progress.update(job, advance=1, info=row["label"])
    return out, runtimes


def compare_runs(run_dirs: Sequence, n_val: Optional[int] = None, seed: int = 0, threads: int = 1,
                 rounds: int = 10, iters: int = 20, warmup: int = 10, progress: bool = True,
                 profile=PROFILE, retrain: bool = False, retrain_steps: Optional[int] = None,
                 retrain_init: Optional[str] = None, retrain_setup: Optional[dict] = None,
                 save_every: Optional[int] = None) -> dict:
    """Every method of ``run_dirs`` (one DYMU run + any AdaShare / DAG runs of the same preset)
    side by side: Δ_T, per-task metrics, params, GMACs, latency measured through the runtime
    on device ``profile`` (module docstring). JSON-able.

    ``retrain`` (the paper's Δ_T, DYMU Table 5 / A-1): each DYMU tree of uniform r is also
    trained again as a static net (:func:`dymu_rt.train.retrain.retrain_uniform`: from
    ``retrain_init`` (default "anchor"), ``retrain_steps`` steps (default the anchor's), on
    ``retrain_setup`` (:meth:`TrainSetup.create <dymu_rt.train.setup.TrainSetup.create>`'s
    keywords: device, precision, channels_last, workers), state every ``save_every`` steps
    (default 100); a finished retrain is reused, a killed one resumes) and gets its
    own row after the deployed tree's, built as a static bundle and timed like the others;
    the deployed row's ``retrained_delta_t`` is that row's Δ_T. The single-task streams are
    retrained the same way (row "single-task retrained (control)"): a retrain trains longer
    than the single-task anchor it is measured against, and that row shows what the extra
    steps alone are worth."""
    for name, v, lo in (("threads", threads, 1), ("rounds", rounds, 1), ("iters", iters, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValidationError(f"--{name} {v!r} is not valid; expected an integer >= {lo}")
    prof = load_profile(profile)                   # a bad profile: refused before any work
    if not retrain:
        for flag, v in (("--retrain-steps", retrain_steps), ("--retrain-init", retrain_init),
                        ("--save-every", save_every)) + tuple(
                            (f"--{k.replace('_', '-')}", v) for k, v in (retrain_setup or {}).items()):
            if v is not None and v is not False:
                raise ValidationError(f"{flag} applies to compare --retrain only (it sets how the DYMU trees "
                                      "are retrained)")
    else:
        check_init(retrain_init or "anchor")
        check_positive(save_every, "--save-every")
        setup = TrainSetup.create(**(retrain_setup or {}))
    runs = [RunDir(d) for d in run_dirs]
    _check_same(runs)
    preset = runs[0].preset()
    tasks = make_tasks(preset)
    torch.set_num_threads(threads)
    retrained = None
    if retrain:
        dymu = next(r for r in runs if method_of(r) == "dymu")
        retrained = retrain_uniform(dymu, (0.0, 1.0), retrain_init or "anchor", retrain_steps, setup,
                                    save_every or 100, progress)
        torch.set_num_threads(threads)
    val = make_split(preset, runs[0].read_config()["data"], "val", n=n_val, seed=seed)
    rows = contenders(runs, retrained)
    with make_progress(disable=not progress) as bar:
        job = bar.add_task("evaluating methods", total=len(rows), info="")
        for row in rows:
            with torch.no_grad():
                row["metrics"] = evaluate_tree(None, tasks, val, forward=row["forward"])
                cost = graph_cost(row["module"], tuple(preset.input_size))
            row.update(params=cost.params, macs=cost.macs, gmacs=cost.gmacs, gflops_paper=cost.gflops_paper)
            bar.update(job, advance=1, info=row["label"])
        single = next(r for r in rows if r["label"] == "single-task")["metrics"]
        for row in rows:
            row["delta_t"] = delta_t(row["metrics"], single, tasks)
        for row in rows:
            if "retrain_of" in row:
                deployed = next(r for r in rows if r["label"] == row["retrain_of"])
                deployed["retrained_delta_t"] = row["delta_t"]["mean"]
        with tempfile.TemporaryDirectory(prefix="dymu-compare-") as tmp:
            calls, runtimes = open_runtimes(rows, runs, Path(tmp), threads, bar, prof)
            try:
                t_job = bar.add_task("latency (interleaved rounds)", total=rounds, info="")
                stats = time_interleaved([c for c, _ in calls], rounds, iters, warmup,
                                         on_round=lambda i: bar.update(t_job, advance=1))
            finally:
                for rt in runtimes:
                    rt.close()
    out = []
    for row, (_, facts), st in zip(rows, calls, stats):
        out.append({**{k: row[k] for k in ("label", "run", "budget", "metrics", "delta_t", "params", "macs",
                                           "gmacs", "gflops_paper", "retrain_of", "retrain", "retrained_delta_t")
                       if k in row},
                    "binding": ("folded" if facts.get("tier") == "folded" else "affine")
                    if facts["bundle"] == "grid" else "static",
                    "latency_ms": {"p50": st["p50_ms"], "p90": st["p90_ms"], "mean": st["mean_ms"],
                                   "n": st["count"]},
                    "timed": facts})
    return {"preset": preset.name, "tasks": [t.name for t in tasks], "n_val": len(val), "seed": seed,
            "primary": {t.name: t.primary_metric for t in tasks},
            "latency_protocol": {"path": "dymu_rt.runtime.Runtime.timed_call (what `dymu-rt profile` times) on "
                                         "bundles built by dymu_rt.compile (temporary folder)",
                                 "backend": ("onnxruntime (CPU, ORT_ENABLE_ALL)" if prof.backend == "onnxruntime"
                                             else prof.backend),
                                 "profile": prof.name, "precision": prof.precision, "threads": threads, "batch": 1, "rounds": rounds,
                                 "iters_per_round": iters, "warmup": warmup, "bindings": BINDINGS,
                                 "statistic": "median over all timed runs, rounds interleaved across methods"},
            "rows": out,
            "units": {"delta_t": "percent vs single-task, positive = better (Choi & Im eqs. 10-11)",
                      "gmacs": "multiply-adds / 1e9 (conv + linear)",
                      "gflops_paper": "the paper's GFLOPs: fvcore's count / 1e9 (dymu_rt.models.cost)"}}


__all__ = ["compare_runs", "contenders", "open_runtimes", "BINDINGS", "PROFILE"]
