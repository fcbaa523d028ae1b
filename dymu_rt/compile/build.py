"""The build: a run lowered to the architecture IR -> one folded ONNX graph per topology -> bundle.

:func:`write_bundle` is the one build; what it builds is the method's lowering
(:mod:`dymu_rt.methods`, whose ``build_bundle`` lowers a run and calls it):

* :class:`GridLowering` (DYMU): the (r, c) grid (``dymu_rt.core.preference.grid``), every
  point's tree from the edge hypernet, deduplicated by topology id; each topology is
  materialized, folded and exported **once**.
* :class:`StaticLowering` (AdaShare, DAG, and the fixed rows ``dymu-rt compare`` deploys:
  single-task, PHN-BN, retrained trees): one graph module, folded with its trained
  weights; one topology, no grid points, no controller, a ``static`` section naming the
  method, its graph and the preference contract (:data:`PREFERENCE_CONTRACT`).

For a grid build: Every graph is exported at the
*anchor* (BN folded with Δγ = Δβ = 0), so an initializer name has the same value in every
topology, and the tensors live **once** per bundle in ``graphs/weights.bin``
(:mod:`dymu_rt.compile.weights`), referenced by each graph as ONNX external data. A grid
point's own weights are bound by name at run time from the weight hypernet and
``fold_params`` (DESIGN.md §2: engines per topology, weights per preference), so build
time and bundle size grow with topologies — by graph structure only — not with points.

Atomic and resumable: every file is written to a temporary name and renamed; a journal
(``.build-journal.json``, rewritten atomically after each step) records finished files
with their sha256 (and the weight file's index), so a killed build re-run skips them.
The weight file is written whole, once, before any graph; graphs are only journaled
against it, and are redone if it ever has to be rewritten with other contents.
``manifest.json`` is written last and only ever names complete files. Re-running a
finished build (same run, grid, backend) is a no-op.

``--backend tensorrt`` (with a TensorRT ``--profile``) then compiles one engine per
topology into ``engines/tensorrt/<profile>/`` (engine + JSON sidecar, one timing cache
per device in ``engines/tensorrt/`` shared by all builds), journaled like the graphs, and
records the files and the device facts in ``manifest["engines"]["tensorrt"][<profile>]``.
A build of another request (different fingerprint) starts clean: stale ``graphs/`` and
``engines/`` (timing caches kept: they depend only on the device) and any ``*.tmp`` a
killed writer left are removed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from dymu_rt import __version__
from dymu_rt.backends.registry import DEFAULT_BACKEND, backend_class
from dymu_rt.bundle import layout as B
from dymu_rt.bundle.manifest import write_manifest
from dymu_rt.compile.architecture import Architecture, materialize
from dymu_rt.compile.export import export_hypernet, export_tree, export_tree_model
from dymu_rt.compile.fold_modules import bn_eps, fold_bn, fold_params
from dymu_rt.compile.weights import ALIGN, INLINE_BELOW, TensorStore, write_store
from dymu_rt.compile.bundle_writer import (build_summary, check_backend, commit_out, compile_engines, file_done,
                                    load_journal, manifest_head, prepare_out, remove_owned, remove_stale,
                                    remove_temporaries, stage_out)
from dymu_rt.core.errors import CheckpointError, ValidationError
from dymu_rt.models.graph import graph_cost
from dymu_rt.core.tree import identity_table
from dymu_rt.run.layout import RunDir
from dymu_rt.core.io import atomic_path, atomic_write_json, read_json, sha256_file
from dymu_rt.utils.progress import make_progress


def _run_fingerprint(run_dir: Path, request: dict[str, Any]) -> str:
    """Identity of a build: the run's weights and config plus the build request."""
    h = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    for name in ("config.json", "anchor.safetensors", "edge_hypernet.safetensors",
                 "weight_hypernet.safetensors"):
        f = run_dir / name
        if name == "config.json":
            cfg = read_json(f, "run config")
            h.update(json.dumps(cfg.get("preset"), sort_keys=True).encode())
        elif f.is_file():
            h.update(sha256_file(f).encode())
    return h.hexdigest()[:32]


# -- per-topology work (also run in worker processes) -------------------------------------------

@torch.no_grad()
def export_topology(anchor, parents, path: Path, store: TensorStore) -> str:
    """Materialize tree ``parents`` at the anchor (BN deltas 0), fold, export with its
    weights referenced in ``store``; returns the graph file's sha256."""
    tree = fold_bn(materialize(anchor, parents))

    export_tree(tree, path, anchor.input_size, anchor.task_names, store=store)
    return sha256_file(path)


@torch.no_grad()
def write_anchor_store(anchor, path: Path) -> TensorStore:
    """Write the weight file of a bundle: the *full* tree (every node of every stream and
    every head) folded at the anchor, its parameters (any size) and larger constants once.

    Every topology is a sub-tree of the full tree with the same module paths, so every
    topology graph finds its tensors here by name.
    """

    full = fold_bn(materialize(anchor, identity_table(anchor.num_layers, anchor.num_tasks)))
    model = export_tree_model(full, anchor.input_size, anchor.task_names)
    return write_store(model, path, always=[name for name, _ in full.named_parameters()])


_WORKER: dict[str, Any] = {}


def _worker_init(run_dir: str, store: dict) -> None:

    torch.set_num_threads(1)
    _, anchor, _, _ = RunDir(run_dir).load_all()
    _WORKER.update(anchor=anchor, store=TensorStore.from_json(store))


def _worker_export(job: tuple) -> tuple[str, str]:
    tid, parents, path = job
    return tid, export_topology(_WORKER["anchor"], np.asarray(parents), Path(path), _WORKER["store"])


# -- what a method lowers a run to ---------------------------------------------------------------

@dataclass
class GridLowering:
    """A DYMU run lowered to the architecture IR: its anchor and controller, the grid and
    every grid point's topology (``archs``: id -> :class:`Architecture`, in first-seen
    order; ``points``: {r, c, topology} per grid point)."""

    run_dir: Path
    cfg: dict
    preset: Any
    anchor: Any
    edge: Any
    weight: Any
    grid: dict
    salt: str
    archs: dict
    points: list


@dataclass
class StaticLowering:
    """One static architecture: ``module`` (a :class:`~dymu_rt.models.graph.GraphModule` of
    ``graph``, eval mode; folded by the build, in place) of a run with config ``cfg``;
    ``method`` names it in the manifest's ``static`` section; ``weights_id`` identifies its
    weights (with the graph and the request: the build's fingerprint); ``source`` is
    recorded as the run directory."""

    preset: Any
    cfg: dict
    module: Any
    graph: Any
    method: str
    weights_id: str
    source: Any


Lowering = Union[GridLowering, StaticLowering]

#: the static section's preference contract
PREFERENCE_CONTRACT = ("one static architecture serves every task at once: r is accepted and ignored; "
                       "c (and --latency-budget) cannot be honoured and are refused")


# -- the build ------------------------------------------------------------------------------------

def check_request(backend: str = DEFAULT_BACKEND, profile: Optional[str] = None, workers: int = 1):
    """Refuse a bad build request before any run is read; returns the profile (or None)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValidationError(f"--workers must be a positive integer, got {workers!r}")
    return check_backend(backend, profile)


def write_bundle(lowered: Lowering, out, backend: str = DEFAULT_BACKEND, profile: Optional[str] = None,
                 workers: int = 1, progress: bool = True,
                 on_topology: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Build the bundle of a lowered run into ``out``; returns a summary dict.

    ``on_topology(id)`` is called after each topology graph of a grid build is committed
    (tests use it to simulate a build killed between topologies). Summary keys: out, points,
    topologies, built (graphs exported by this call), reused, bundle_bytes, seconds,
    gmacs_min, gmacs_max (multiply-adds / 1e9), weights_bytes, noop, engines_built (and
    ``static``, the method, for a static build).
    """
    t0 = time.perf_counter()
    prof = check_request(backend, profile, workers)
    preset = lowered.preset
    source = lowered.run_dir if isinstance(lowered, GridLowering) else lowered.source
    if prof is not None and prof.shape is not None and list(prof.shape) != [3, *preset.input_size]:
        raise ValidationError(f"profile '{prof.name}' key 'input.shape' = {list(prof.shape)} but run {source} "
                              f"takes [3, {', '.join(map(str, preset.input_size))}] images; use a profile for this "
                              "input size or set [input] shape in a copy of the profile")
    if isinstance(lowered, StaticLowering):
        return _write_static(lowered, Path(out), backend, prof, progress, t0)
    return _write_grid(lowered, Path(out), backend, prof, workers, progress, on_topology, t0)


def _write_grid(low: GridLowering, out: Path, backend: str, prof, workers: int, progress: bool,
                on_topology, t0: float) -> dict[str, Any]:
    run_dir, preset, anchor, edge, weight = low.run_dir, low.preset, low.anchor, low.edge, low.weight
    n = len(preset.tasks)
    request = {"grid": low.grid, "backend": backend, "profile": prof.name if prof else None,
               "producer": __version__, "schema_version": B.SCHEMA_VERSION}
    fingerprint = _run_fingerprint(run_dir, request)
    existing, owned = prepare_out(out, fingerprint)
    if existing is not None:
        return build_summary(out, existing, built=0, seconds=time.perf_counter() - t0, noop=True)
    final = out
    out, owned = stage_out(out, owned)        # beside a whole bundle: it stays usable until the swap

    journal = load_journal(out, fingerprint, owned)
    atomic_write_json(out / B.JOURNAL, journal)
    remove_temporaries(out)
    if not journal["files"]:
        # Fresh build of this request: the graphs and engines an earlier request wrote are
        # stale. Only files this tool wrote (the journal's "owned") are removed.
        remove_owned(out, journal, keep=set())

    archs = low.archs
    with make_progress(disable=not progress) as bar:
        # Controller first: small, and every topology needs fold_params to be re-bound.
        _write_controller(out, journal, anchor, edge, weight, n)
        # Then the weight file, whole: every graph below references it.
        store = _write_weights(out, journal, anchor)

        todo = [tid for tid in archs if not file_done(out, journal, B.graph_file(tid))]
        t_top = bar.add_task("topologies", total=len(archs), completed=len(archs) - len(todo),
                             info=f"{len(archs) - len(todo)} reused")

        def commit(tid: str, digest: str) -> None:
            journal["files"][B.graph_file(tid)] = digest
            atomic_write_json(out / B.JOURNAL, journal)
            bar.update(t_top, advance=1, info=tid)
            if on_topology is not None:
                on_topology(tid)

        jobs = [(tid, archs[tid].table.tolist(), str(out / B.graph_file(tid))) for tid in todo]
        if workers == 1 or len(jobs) <= 1:
            for tid, parents, path in jobs:
                commit(tid, export_topology(anchor, np.asarray(parents), Path(path), store))
        else:
            _export_parallel(run_dir, jobs, workers, commit, store)

        engines: dict[str, Any] = {}
        n_engines = 0
        if backend_class(backend).builds_ahead:
            engines, n_engines = compile_engines(out, journal, list(archs), prof, bar)

    counts: dict[str, int] = {}
    for row in low.points:
        counts[row["topology"]] = counts.get(row["topology"], 0) + 1
    topologies = {}
    for tid, arch in archs.items():
        rel = B.graph_file(tid)
        topologies[tid] = {
            "parents": [list(row) for row in arch.parents], "params": arch.params, "macs": arch.macs,
            "gmacs": arch.gmacs, "gflops_paper": arch.gflops_paper, "file": rel, "sha256": journal["files"][rel],
            "n_points": counts[tid], "bn_slots": list(arch.bn_slots), "weights": "anchor",
        }
    manifest = {
        **manifest_head(preset, low.cfg),
        "grid": low.grid, "topology_salt": low.salt,
        "num_layers": anchor.num_layers, "bn_delta_size": anchor.bn_delta_size,
        "points": low.points, "topologies": topologies,
        "controller": {key: {"file": rel, "sha256": journal["files"][rel]} for key, rel in (
            ("edge_hypernet", B.EDGE_HYPERNET_FILE), ("weight_hypernet", B.WEIGHT_HYPERNET_FILE),
            ("fold_params", B.FOLD_PARAMS_FILE))},
        "bn_layout": [{"name": s.name, "layer": s.layer, "stream": s.stream, "channels": s.channels,
                       "offset": s.offset} for s in anchor.bn_layout],
        "bn_eps": bn_eps(anchor),
        "weights": {
            "file": B.WEIGHTS_FILE, "sha256": store.sha256, "bytes": store.size,
            "at": "anchor", "bn_deltas": 0.0, "binding": "by-name",
            "inline_below": INLINE_BELOW, "align": ALIGN,
            "tensors": store.to_json()["tensors"],
        },
        "latency": {}, "engines": engines,
        "build": {"fingerprint": fingerprint, "backend": backend, "profile": prof.name if prof else None,
                  "run_dir": str(run_dir)},
    }
    manifest = write_manifest(out, manifest)          # validated against the schema it is read with
    remove_stale(out, manifest, journal)
    commit_out(out, final)
    out = final
    summary = build_summary(out, manifest, built=len(todo), seconds=time.perf_counter() - t0, noop=False)
    summary["engines_built"] = n_engines
    return summary


@torch.no_grad()
def _write_static(low: StaticLowering, out: Path, backend: str, prof, progress: bool, t0: float) -> dict[str, Any]:
    preset, module, graph, method = low.preset, low.module, low.graph, low.method
    request = {"backend": backend, "profile": prof.name if prof else None, "producer": __version__,
               "schema_version": B.SCHEMA_VERSION, "static": True, "method": method}
    h = hashlib.sha256(json.dumps(request, sort_keys=True).encode())
    h.update(json.dumps(graph.to_json(), sort_keys=True).encode())
    h.update(low.weights_id.encode())
    fingerprint = h.hexdigest()[:32]
    # The graph's first run (its cost, at the preset's input size) comes before anything is
    # written: a stored graph that does not fit its network (a state fed a map of another
    # shape) is the run's fault, reported as one line, and leaves no folder behind.
    try:
        cost = graph_cost(module, tuple(preset.input_size))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{low.source}: its {method} graph cannot run on a "
                              f"{preset.input_size[0]}x{preset.input_size[1]} image ({first}); the run's "
                              "architecture does not fit its network") from None
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
        **manifest_head(preset, low.cfg),
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
                  "run_dir": str(low.source)},
    }
    manifest = write_manifest(out, manifest)          # validated against the schema it is read with
    remove_stale(out, manifest, journal)
    commit_out(out, final)
    out = final
    summary = build_summary(out, manifest, built=1, seconds=time.perf_counter() - t0, noop=False)
    summary["engines_built"] = n_engines
    summary["static"] = method
    return summary


def _write_controller(out: Path, journal: dict, anchor, edge, weight, n_tasks: int) -> None:
    from safetensors.torch import save_file


    def done(rel: str) -> None:
        journal["files"][rel] = sha256_file(out / rel)
        atomic_write_json(out / B.JOURNAL, journal)

    if not file_done(out, journal, B.EDGE_HYPERNET_FILE):
        export_hypernet(edge, n_tasks, out / B.EDGE_HYPERNET_FILE, "logits")
        done(B.EDGE_HYPERNET_FILE)
    if not file_done(out, journal, B.WEIGHT_HYPERNET_FILE):
        export_hypernet(weight, n_tasks, out / B.WEIGHT_HYPERNET_FILE, "deltas")
        done(B.WEIGHT_HYPERNET_FILE)
    if not file_done(out, journal, B.FOLD_PARAMS_FILE):
        with atomic_path(out / B.FOLD_PARAMS_FILE) as tmp:
            # Store once: raw conv weights are derived from graphs/weights.bin (see fold_params).
            save_file(fold_params(anchor, raw="unrecoverable"), str(tmp),
                      metadata={"format": "dymu-rt fold_params v2 (raw conv weights only where unrecoverable)"})
        done(B.FOLD_PARAMS_FILE)


def _write_weights(out: Path, journal: dict, anchor) -> TensorStore:
    """The bundle's weight file: reused when the journal vouches for it, else (re)written.

    Graphs reference byte ranges of this file; if it is rewritten with other contents
    (e.g. another torch folds differently), every graph journaled against the old one is
    dropped from the journal and re-exported.
    """
    rel = B.WEIGHTS_FILE
    if file_done(out, journal, rel) and isinstance(journal.get("weights"), dict):
        store = TensorStore.from_json(journal["weights"])
        if store.sha256 == journal["files"][rel]:
            return store
    old = journal["files"].get(rel)
    store = write_anchor_store(anchor, out / rel)
    if old is not None and old != store.sha256:
        for f in [f for f in journal["files"] if f.startswith(f"{B.GRAPHS_DIR}/")]:
            del journal["files"][f]
    journal["files"][rel] = store.sha256
    journal["weights"] = store.to_json()
    atomic_write_json(out / B.JOURNAL, journal)
    return store


def _export_parallel(run_dir: Path, jobs: list, workers: int, commit, store: TensorStore) -> None:
    """Export topologies in ``workers`` spawned processes (each loads the run once)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(str(run_dir), store.to_json())) as pool:
        futures = [pool.submit(_worker_export, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                commit(*fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise

