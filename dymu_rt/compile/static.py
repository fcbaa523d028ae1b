"""Bundle of one static architecture (an AdaShare or DAG run): the same compiler, one topology.

(:func:`write_static_bundle` also takes any fixed architecture as a graph module:
``dymu-rt compare`` deploys a DYMU run's single-task and PHN-BN baselines so.)

The run's :class:`~dymu_rt.models.graph.StaticGraph` becomes a
:class:`~dymu_rt.models.graph.GraphModule`, is folded by the same walk as every DYMU tree
(:func:`dymu_rt.compile.fold_modules.fold_bn`), its tensors written once to ``graphs/weights.bin``
(:func:`dymu_rt.compile.weights.write_store`) and exported by the same exporter
(:func:`dymu_rt.compile.export.export_tree`); TensorRT engines are compiled by the same
step as a grid build's. The manifest is the schema-2 manifest with:

* one topology (id = the graph's hash), no modulated BN slots (nothing to bind: the
  weights are the trained ones), ``weights`` "static";
* no grid points (``points`` [], ``grid.n_points`` 0) and an empty ``controller`` (no
  hypernets);
* a ``static`` section: method, graph, shared modules, and the preference contract —
  r is accepted and ignored (every task is served by the one graph), c and latency
  budgets are refused, since nothing could honour them.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from dymu_rt import __version__
from dymu_rt.backends.registry import backend_class
from dymu_rt.bundle import layout as B
from dymu_rt.bundle.manifest import write_manifest
from dymu_rt.compile.export import export_tree, export_tree_model
from dymu_rt.compile.fold_modules import fold_bn
from dymu_rt.compile.weights import ALIGN, INLINE_BELOW, write_store
from dymu_rt.compile.bundle_writer import (build_summary, check_backend, compile_engines, load_journal, manifest_head,
                                    commit_out, prepare_out, remove_owned, remove_stale, remove_temporaries,
                                    stage_out)
from dymu_rt.core.errors import ValidationError
from dymu_rt.models.graph import graph_cost
from dymu_rt.train.static import method_of, static_module
from dymu_rt.core.io import atomic_write_json, sha256_file
from dymu_rt.utils.progress import make_progress

PREFERENCE_CONTRACT = ("one static architecture serves every task at once: r is accepted and ignored; "
                       "c (and --latency-budget) cannot be honoured and are refused")


def build_static_bundle(run, out: Path, backend: str = "onnxruntime", profile: Optional[str] = None,
                        progress: bool = True) -> dict[str, Any]:
    """Build the bundle of static run ``run`` (a RunDir) into ``out``; returns the summary
    dict of :func:`dymu_rt.compile.bundle_writer.build_summary` (plus ``engines_built``, ``static``)."""
    preset, module, graph = static_module(run)
    return write_static_bundle(out, preset, run.read_config(), module, graph, method_of(run),
                               sha256_file(run.module_path("model")), run.path, backend, profile, progress)


@torch.no_grad()
def write_static_bundle(out: Path, preset, cfg: dict, module, graph, method: str, weights_id: str, source,
                        backend: str = "onnxruntime", profile: Optional[str] = None,
                        progress: bool = True) -> dict[str, Any]:
    """Build the bundle of one static architecture into ``out``: ``module`` (a
    :class:`~dymu_rt.models.graph.GraphModule` of ``graph``, eval mode; folded here, in
    place) of a run with config ``cfg``; ``method`` names it in the manifest ("adashare",
    "dag", or a DYMU run's fixed baselines "single-task" / "phn-bn" / "dymu-retrained",
    which ``dymu-rt compare`` deploys so); ``weights_id`` identifies its weights (with the graph and the
    request: the build's fingerprint); ``source`` is recorded as the run directory."""
    t0 = time.perf_counter()
    out = Path(out)
    prof = check_backend(backend, profile)
    if prof is not None and prof.shape is not None and list(prof.shape) != [3, *preset.input_size]:
        raise ValidationError(f"profile '{prof.name}' key 'input.shape' = {list(prof.shape)} but run {source} "
                              f"takes [3, {', '.join(map(str, preset.input_size))}] images; use a profile for this "
                              "input size or set [input] shape in a copy of the profile")
    request = {"backend": backend, "profile": prof.name if prof else None, "producer": __version__,
               "schema_version": B.SCHEMA_VERSION, "static": True, "method": method}
    h = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    h.update(json.dumps(graph.to_json(), sort_keys=True).encode())
    h.update(weights_id.encode())
    fingerprint = h.hexdigest()[:32]
    existing, owned = prepare_out(out, fingerprint)
    if existing is not None:
        return build_summary(out, existing, built=0, seconds=time.perf_counter() - t0, noop=True)
    final = out
    out, owned = stage_out(out, owned)        # beside a whole bundle: it stays usable until the swap
    # The same journal discipline as a grid build: only files this tool wrote are ever
    # removed (an earlier build's graphs and engines; never a user's file).
    journal: dict[str, Any] = load_journal(out, fingerprint, owned)
    journal["files"] = {}                           # one graph: always rebuilt whole
    atomic_write_json(out / B.JOURNAL, journal)
    remove_temporaries(out)
    remove_owned(out, journal, keep=set())
    tid = graph.id
    with make_progress(disable=not progress) as bar:
        job = bar.add_task(f"static {method} graph", total=3, info=tid)
        cost = graph_cost(module, tuple(preset.input_size))
        fold_bn(module)
        (out / B.GRAPHS_DIR).mkdir(parents=True, exist_ok=True)
        model = export_tree_model(module, tuple(preset.input_size), list(graph.tasks))
        store = write_store(model, out / B.WEIGHTS_FILE, always=[n for n, _ in module.named_parameters()])
        journal["files"][B.WEIGHTS_FILE] = store.sha256
        bar.update(job, advance=1)
        rel = B.graph_file(tid)
        export_tree(module, out / rel, tuple(preset.input_size), list(graph.tasks), store=store)
        journal["files"][rel] = sha256_file(out / rel)
        atomic_write_json(out / B.JOURNAL, journal)
        bar.update(job, advance=1)
        engines, n_engines = {}, 0
        if backend_class(backend).builds_ahead:
            engines, n_engines = compile_engines(out, journal, [tid], prof, bar)
        bar.update(job, advance=1)
    manifest = {
        **manifest_head(preset, cfg),
        "grid": {"step": None, "c_step": None, "n_points": 0}, "topology_salt": "",
        "num_layers": 0, "bn_delta_size": 0, "points": [],
        "topologies": {tid: {"parents": [], "params": cost.params, "macs": cost.macs, "gmacs": cost.gmacs,
                             "gflops_paper": cost.gflops_paper,
                             "file": rel, "sha256": journal["files"][rel], "n_points": 0, "bn_slots": [],
                             "weights": "static"}},
        "controller": {}, "bn_layout": [], "bn_eps": 1e-5,
        "weights": {"file": B.WEIGHTS_FILE, "sha256": store.sha256, "bytes": store.size, "at": "trained",
                    "bn_deltas": 0.0, "binding": "none", "inline_below": INLINE_BELOW, "align": ALIGN,
                    "tensors": store.to_json()["tensors"]},
        "static": {"method": method, "graph": graph.to_json(), "shared_modules": graph.shared_modules(),
                   "preference": PREFERENCE_CONTRACT},
        "latency": {}, "engines": engines,
        "build": {"fingerprint": fingerprint, "backend": backend, "profile": prof.name if prof else None,
                  "run_dir": str(source)},
    }
    manifest = write_manifest(out, manifest)          # validated against the schema it is read with
    remove_stale(out, manifest, journal)
    commit_out(out, final)
    out = final
    summary = build_summary(out, manifest, built=1, seconds=time.perf_counter() - t0, noop=False)
    summary["engines_built"] = n_engines
    summary["static"] = method
    return summary
