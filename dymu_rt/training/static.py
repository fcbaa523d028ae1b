"""Runs of the static-architecture methods (AdaShare, the DAG network) beside DYMU's.

One command shape trains every method (``dymu-rt train --method dymu|adashare|dag``); the
stage lengths come from the same overrides: ``--anchor-steps`` is the warm-up,
``--edge-steps`` the policy/architecture search, ``--weight-steps`` the retrain (AdaShare)
or fine-tune (DAG). Without overrides the warm-up and the final stage take the preset's
``anchor_steps`` (the budget the single-task nets get, so Δ_T compares like with like)
and the search its ``edge_steps``.

A static run directory (its stages and result are written by
:mod:`dymu_rt.training.static_run`, which the trainers import; the method -- its config, its
network, its trainer -- is its registered :class:`~dymu_rt.methods.Method`,
:mod:`dymu_rt.methods.adashare` / :mod:`dymu_rt.methods.dag`)::

    RUN/config.json          method, method_config, preset, data, stages (warmup, search, final)
    RUN/model.safetensors    the trained network (the final stage's weights)
    RUN/architecture.json    the static graph (dymu_rt.models.graph) + the method's decisions

Stages are resumable within a stage: every ``--save-every`` steps
:class:`~dymu_rt.training.static_run.StageProgress`
saves the network, every optimizer, the fp16 loss scale and the RNG states
(``state/<stage>-progress.json`` + its tensor file, written by
:meth:`~dymu_rt.run.layout.RunDir.save_state`: the JSON rename is the commit), and a
re-run continues from there on the same data stream (the loader's batches are a function of
the step). A finished stage's result is saved (``state/<stage>.safetensors``) and its
progress state removed; a re-run continues after the last finished stage. Every schedule
of the static methods (learning rate, AdaShare's temperature and curriculum) is a function
of the step, so the step restores them.

Where and how a stage trains comes from the same :class:`~dymu_rt.training.setup.TrainSetup`
as DYMU's stages: device, precision (autocast; the losses, Gumbel sampling, sigmoid sums and
the weighted mixing of the upper-level parameters stay in fp32), channels-last, input
workers and torchrun (DDP, ``--sync-bn``). Saved tensors are CPU tensors, so a run trained
on a GPU loads (and resumes) on a CPU.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from dymu_rt.core.errors import CheckpointError, ValidationError
from dymu_rt.models.graph import StaticGraph, materialize_graph, prune_graph
from dymu_rt.run.layout import ARCHITECTURE, MODEL, STATIC_STAGES, RunDir, load_state_into, load_tensors, method_of
from dymu_rt.core.io import read_json


def stage_steps(preset, overrides: dict) -> dict[str, Any]:
    """A new static run's stage lengths and batch, from the DYMU overrides (the preset's
    otherwise): what every static method's config starts from."""
    t = preset.train
    return {"warmup_steps": overrides.get("anchor_steps") or t.anchor_steps,
            "search_steps": overrides.get("edge_steps") or t.edge_steps,
            "final_steps": overrides.get("weight_steps") or t.anchor_steps,
            "batch": overrides.get("anchor_batch") or t.anchor_batch}


def new_run_extra(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config entries a new static run of ``method`` with settings ``config`` starts with."""
    return {"method": method, "method_config": config, "stages": {s: {"done": False} for s in STATIC_STAGES}}


def check_resume(run: RunDir, want: dict[str, Any], overrides: dict, flow: Optional[int]) -> None:
    """Refuse resuming static run ``run`` with other stage lengths / flow than it started with
    (``want``: the method's config from this command line's options)."""
    cfg = run.read_config()
    # Only what the command line can set is compared: the other settings (learning rates,
    # λ's) have no flag, so a run made with other values through the API still resumes.
    for k, v in cfg["method_config"].items():
        if k in want and want[k] != v and (k != "flow" or flow is not None) and \
                (k == "flow" or (k in _STEP_KEYS and _given(k, overrides))):
            raise ValidationError(f"{run.path} was started with {k}={v!r}; it cannot change to {want[k]!r} "
                                  "(use another --out)")


_STEP_KEYS = ("warmup_steps", "search_steps", "final_steps", "batch")


def _given(key: str, overrides: dict) -> bool:
    src = {"warmup_steps": "anchor_steps", "search_steps": "edge_steps", "final_steps": "weight_steps",
           "batch": "anchor_batch"}[key]
    return overrides.get(src) is not None


def load_static(run: RunDir, net):
    """(preset, trained network in eval mode, static graph, decisions) of a finished run;
    ``net`` is a fresh network of the run's method (its method's ``net(run)``)."""
    if not run.stage_done("final"):
        raise CheckpointError(f"{run.path}: the final stage has not finished; run "
                              f"`dymu-rt train --out {run.path}` to complete it")
    load_state_into(net, load_tensors(run.module_path(MODEL), "model checkpoint"), run.module_path(MODEL),
                    "model checkpoint")
    arch = read_json(run.path / ARCHITECTURE, "architecture")
    try:
        graph = StaticGraph.from_json(arch["graph"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{run.path / ARCHITECTURE} is malformed ({e})") from None
    check_graph(net, graph, run.path / ARCHITECTURE)
    # A run saved before the lowerings pruned may store nodes no head reads: they change no
    # output, and the export would drop them (a no-op for every other graph).
    return run.preset(), net.eval(), prune_graph(graph), {k: v for k, v in arch.items() if k != "graph"}


def check_graph(net, graph: StaticGraph, where) -> None:
    """Refuse a stored graph that does not fit the run's network: a module path the network
    lacks or that cannot be called (a container), a head used as a layer or read out for
    another task, or other tasks than the network's. (A layer fed a map of the wrong shape
    shows when the graph first runs: the build reports it.)"""
    if sorted(graph.tasks) != sorted(net.task_names) or len(set(graph.tasks)) != len(graph.tasks):
        raise CheckpointError(f"{where}: the graph's heads are for tasks {list(graph.tasks)}; expected one head "
                              f"per task of the run: {list(net.task_names)}")
    for h in graph.heads:
        if h.module != f"heads.{h.task}":
            raise CheckpointError(f"{where}: task {h.task!r} reads out through {h.module!r}; expected its own "
                                  f"head 'heads.{h.task}'")
    for n in graph.nodes:
        if n.module is not None and (n.module == "heads" or n.module.startswith("heads.")):
            raise CheckpointError(f"{where}: graph node {n.name!r} calls head {n.module!r}; a head only reads "
                                  "out a task (expected a layer of the central network)")
    for path in graph.modules_used():
        try:
            m = net.get_submodule(path)
        except AttributeError:
            raise CheckpointError(f"{where}: the graph calls module {path!r}, which the run's network does "
                                  "not have") from None
        if isinstance(m, (torch.nn.ModuleDict, torch.nn.ModuleList)) or path == "":
            raise CheckpointError(f"{where}: the graph calls {path!r}, which is not a layer of the run's "
                                  "network (expected a module path such as 'edges.e1_2' or 'heads.<task>')")


def static_module(preset, net, graph):
    """The GraphModule of a loaded static run's architecture: what the compiler exports."""
    return materialize_graph(net, graph, preset.mean, preset.std)


def not_static(run: RunDir) -> CheckpointError:
    """The error for a run that is not a static-architecture run."""
    return CheckpointError(f"{run.path} is not a static-architecture run (method {method_of(run)!r})")
