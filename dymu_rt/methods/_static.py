"""What the static-architecture methods share: a run of one trained network plus its decisions,
trained by the method's own trainer through DYMU's pipeline bookkeeping, lowered to one
static graph, evaluated as one architecture."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, ClassVar, Optional

import torch

from dymu_rt.compile.build import StaticLowering
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.comparison import evaluate_static_run
from dymu_rt.models.graph import materialize_graph
from dymu_rt.training import pipeline, static
from dymu_rt.run.layout import MODEL, RunDir
from dymu_rt.core.io import sha256_file
from dymu_rt.methods._registry import Method


def state_id(module: torch.nn.Module) -> str:
    """sha256 of a module's tensors: what a static bundle of derived weights is identified by."""
    h = hashlib.sha256()
    for name, v in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class StaticMethod(Method):
    """A method whose run trains one static architecture (AdaShare, the DAG network).

    Subclasses give ``config`` (the stored ``method_config``), ``net`` (a fresh network),
    ``trainer`` (``dymu_rt.train.<family>.train_<family>``), ``decisions_forward`` and
    ``final_stage_word`` (what the last stage does, for the budget cell)."""

    bundle = "static"
    own_run = True
    done_stage = "final"
    trainer: ClassVar[Callable[..., dict]]
    final_stage_word: ClassVar[str] = "fine-tune"

    # -- what a family supplies -------------------------------------------------------------------
    def config(self, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
        raise NotImplementedError

    def net(self, run: RunDir):
        raise NotImplementedError

    def decisions_forward(self, net, decisions: dict):
        """x -> outputs of ``net`` with its stored ``decisions`` (the training-time forward)."""
        raise NotImplementedError

    # -- training ---------------------------------------------------------------------------------
    def new_run_extra(self, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
        return static.new_run_extra(self.name, self.config(preset, overrides, flow))

    def check_resume(self, run, overrides: dict, flow: Optional[int]) -> None:
        cfg = run.read_config()
        want = self.config(run.preset(), overrides, flow if flow is not None else cfg["method_config"].get("flow"))
        static.check_resume(run, want, overrides, flow)

    def train(self, run, stages: str = "all", seed=None, n_train=None, n_val=None, progress: bool = True,
              save_every: int = 100, setup=None, setup_record=None) -> dict:
        if stages != "all":
            raise ValidationError(f"{run.path} is a {self.name} run: it trains as a whole (`dymu-rt train --out "
                                  f"{run.path}`), not by stage group '{stages}'")
        return pipeline.train(run, "all", seed, n_train, n_val, progress, save_every, setup, setup_record,
                              trainer=type(self).trainer)

    # -- a finished run ---------------------------------------------------------------------------
    def load(self, run: RunDir):
        """(preset, trained network in eval mode, static graph, decisions)."""
        return static.load_static(run, self.net(run))

    def forward(self, run: RunDir):
        """(preset, net, graph, forward x -> outputs): the run as it was trained."""
        preset, net, graph, dec = self.load(run)
        return preset, net, graph, self.decisions_forward(net, dec)

    def lower(self, run, step=None, c_step=None) -> StaticLowering:
        preset, net, graph, _ = self.load(run)
        return StaticLowering(preset, run.read_config(), static.static_module(preset, net, graph), graph,
                              self.name, sha256_file(run.module_path(MODEL)), run.path)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, run_dir, **options) -> dict:
        """``dymu-rt eval`` of a run of this method (:func:`dymu_rt.evaluate.comparison.evaluate_static_run`)."""
        run = RunDir(run_dir)
        return evaluate_static_run(run_dir, loaded=lambda: self.forward(run), label=self.label(run.read_config()),
                                   **options)

    def budget(self, run) -> str:
        # the lengths the run stored (its overrides included), not the preset's
        mc = run.read_config()["method_config"]
        return (f"{self.name}: warm-up {mc['warmup_steps']} + search {mc['search_steps']} + "
                f"{self.final_stage_word} {mc['final_steps']} steps x batch {mc['batch']}")

    def rows(self, run, retrained: Optional[dict]) -> list[dict]:
        preset, net, graph, forward = self.forward(run)
        module = materialize_graph(net, graph, preset.mean, preset.std)
        return [{"label": self.label(run.read_config()), "run": str(run.path), "budget": self.budget(run),
                 "module": module, "forward": forward,
                 "deploy": {"kind": "static", "method": self.name, "graph": graph, "weights_id": state_id(net)}}]
