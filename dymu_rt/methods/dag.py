"""The DAG network (Controllable Dynamic Multi-Task Architectures' comparison of a searched
central DAG with flow constant M): trained by :func:`dymu_rt.training.dag.train_dag`, lowered
by :func:`dymu_rt.models.dag.lower_masks` into one static graph."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.methods._registry import register_method
from dymu_rt.methods._static import StaticMethod
from dymu_rt.models.dag import DagNet, default_spec
from dymu_rt.training import static
from dymu_rt.training.dag import DagConfig, dag_spec, train_dag

#: the flow constant M of a run made without --flow
DEFAULT_FLOW = 3


@register_method
class Dag(StaticMethod):
    name = "dag"
    trainer = train_dag

    def check_options(self, flow: Optional[int]) -> None:
        if flow is not None and (isinstance(flow, bool) or not isinstance(flow, int) or flow < 1):
            raise ValidationError(f"--flow {flow!r} is not valid; expected an integer >= 1 (the flow constant M)")

    def config(self, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
        flow = DEFAULT_FLOW if flow is None else flow
        return dataclasses.asdict(DagConfig(**static.stage_steps(preset, overrides), flow=flow,
                                            states=default_spec(preset, flow).states))

    def net(self, run):
        preset = run.preset()
        return DagNet(preset, dag_spec(preset, DagConfig(**run.read_config()["method_config"])))

    def decisions_forward(self, net, decisions: dict):
        masks = tuple(torch.as_tensor(decisions["masks"][k], dtype=torch.float32) for k in "ABG")
        return lambda x: net(x, masks)

    def label(self, cfg: dict) -> str:
        return f"DAG M={cfg['method_config']['flow']}"
