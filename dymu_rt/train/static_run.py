"""A static-architecture run directory (AdaShare, the DAG network): its stages and its result.

The pieces every static method's trainer writes with and :mod:`dymu_rt.train.static` reads
with (layout in :mod:`dymu_rt.train.static`'s docstring)::

    RUN/config.json          method, method_config, preset, data, stages (warmup, search, final)
    RUN/model.safetensors    the trained network (the final stage's weights)
    RUN/architecture.json    the static graph (dymu_rt.models.graph) + the method's decisions
    RUN/state/<stage>.safetensors   a finished stage's network state (resume at stage granularity)
"""

from __future__ import annotations

from typing import Any

import torch

from dymu_rt.models.graph import StaticGraph
from dymu_rt.train.checkpoint import RunDir, load_module, save_module
from dymu_rt.utils.io import atomic_write_json

STATIC_STAGES = ("warmup", "search", "final")
ARCHITECTURE = "architecture.json"
MODEL = "model"


def method_of(run: RunDir) -> str:
    """The method a run was trained with ("dymu" for runs that predate the option)."""
    return str(run.read_config().get("method", "dymu"))


def save_stage(run: RunDir, stage: str, net: torch.nn.Module, summary: dict[str, Any]) -> None:
    """A finished stage: its network state, then the stage marked done with ``summary``."""
    save_module(net, run.path / "state" / f"{stage}.safetensors")
    run.mark_done(stage, summary)


def load_stage(run: RunDir, stage: str, net: torch.nn.Module) -> torch.nn.Module:
    """Load a finished stage's network state into ``net``."""
    return load_module(net, run.path / "state" / f"{stage}.safetensors", f"{stage} state")


def save_result(run: RunDir, net: torch.nn.Module, graph: StaticGraph, decisions: dict[str, Any]) -> None:
    """The run's deliverables: model weights and the static graph (+ method decisions)."""
    save_module(net, run.module_path(MODEL))
    atomic_write_json(run.path / ARCHITECTURE, {"graph": graph.to_json(), **decisions})
