"""DYMU (Raychaudhuri et al., CVPR 2022): an anchor net of N single-task streams, an edge
hypernet that picks a tree per preference (r, c) and a weight hypernet that modulates its BN.
Trained by DYMU's own stages (:mod:`dymu_rt.training.pipeline`: anchor -> edge -> weight, PHN-BN
on demand); lowered to a preference grid of topologies (:class:`~dymu_rt.compile.build.GridLowering`),
deployed as a grid bundle with the controller."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dymu_rt.compile.architecture import Architecture, materialize, preference_tensors, topology_salt
from dymu_rt.compile.build import GridLowering
from dymu_rt.core.errors import CheckpointError
from dymu_rt.core.preference import grid
from dymu_rt.methods._registry import Method, register_method
from dymu_rt.methods.baselines import DYMU_RETRAINED, PHN_BN, SINGLE_TASK, dymu_budget
from dymu_rt.models.cost import CostModel
from dymu_rt.training import pipeline
from dymu_rt.run.layout import DEFAULT_METHOD


@register_method
class Dymu(Method):
    name = DEFAULT_METHOD          # runs recorded without a method are DYMU's
    bundle = "grid"
    own_run = True
    done_stage = "weight"

    def train(self, run, stages: str = "all", seed=None, n_train=None, n_val=None, progress: bool = True,
              save_every: int = 100, setup=None, setup_record=None) -> dict:
        return pipeline.train(run, stages, seed, n_train, n_val, progress, save_every, setup, setup_record)

    def lower(self, run, step="0.1", c_step=None) -> GridLowering:
        """Every point of the (r, c) grid of steps ``step`` / ``c_step`` asks the edge hypernet
        for its tree; the trees, deduplicated by topology id, are the bundle's topologies."""
        if not run.stage_done(self.done_stage):
            raise CheckpointError(f"{run.path}: stage 'weight' has not finished; a bundle needs the weight "
                                  f"hypernet (run `dymu-rt train --out {run.path}`)")
        preset, anchor, edge, weight = run.load_all()
        points = grid(len(preset.tasks), step, c_step)
        grid_spec = {"step": float(Fraction(str(step))),
                     "c_step": float(Fraction(str(c_step if c_step is not None else step))),
                     "n_points": len(points)}
        salt = topology_salt(preset)
        cost = CostModel(anchor)
        archs: dict[str, Architecture] = {}
        rows = []
        with torch.no_grad():
            for pref in points:
                rt, ct = preference_tensors(pref.r, pref.c)
                arch = Architecture.from_parents(anchor, np.asarray(edge.architecture(rt, ct)), salt, cost)
                archs.setdefault(arch.id, arch)
                rows.append({"r": [float(v) for v in pref.r], "c": float(pref.c), "topology": arch.id})
        return GridLowering(Path(run.path), run.read_config(), preset, anchor, edge, weight, grid_spec, salt,
                            archs, rows)

    def label(self, cfg: dict) -> str:
        return "DYMU"

    def budget(self, run) -> str:
        return dymu_budget(run, ("edge", "weight"), controller=True)

    def rows(self, run, retrained: Optional[dict]) -> list[dict]:
        """single-task, PHN-BN (if trained), then DYMU at c = 0 and c = 1 (uniform r), each
        followed by its retrained row under ``compare --retrain``."""
        loaded = run.load_all()
        preset, anchor, edge, weight = loaded
        rows = SINGLE_TASK.rows(run, retrained, loaded) + PHN_BN.rows(run, retrained, loaded)
        n = len(preset.tasks)
        salt = topology_salt(preset)
        r = torch.full((n,), 1.0 / n)
        for c in (0.0, 1.0):
            ct = torch.tensor(c)
            with torch.no_grad():
                parents = edge.architecture(r, ct)
                deltas = weight(r, ct).reshape(-1) if weight is not None else None
            rows.append({"label": f"DYMU c={c:g} (uniform r)", "run": str(run.path), "budget": self.budget(run),
                         "module": materialize(anchor, parents, deltas),
                         "forward": lambda x, a=anchor, p=parents, d=deltas: a(x, p, d),
                         "deploy": {"kind": "grid", "r": [1.0 / n] * n, "c": c,
                                    "topology": Architecture.from_parents(anchor, parents, salt).id}})
            if retrained is not None:
                rows.append(DYMU_RETRAINED.row(run, preset, parents, *retrained[c], rows[-1]["label"],
                                               f"DYMU c={c:g} retrained (uniform r)"))
        return rows
