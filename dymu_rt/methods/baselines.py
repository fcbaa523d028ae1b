"""The fixed baselines ``dymu-rt compare`` derives from a DYMU run, each deployed as a static
bundle: the single-task nets (the anchor's identity tree), PHN-BN (its shared tree with the BN
its hypernet gives at uniform r folded in) and the retrained trees (``compare --retrain``:
the uniform-r tree, or the identity tree as the control, trained again as a static net).

None has a run of its own (``own_run`` False): their rows come from the DYMU run
(:meth:`dymu_rt.methods.dymu.Dymu.rows` calls these in table order)."""

from __future__ import annotations

from typing import Optional

import torch

from dymu_rt.compile.architecture import with_bn_deltas
from dymu_rt.core.tree import identity_table
from dymu_rt.methods._registry import Method, get_method, register_method
from dymu_rt.methods._static import state_id
from dymu_rt.models.graph import lower_tree, materialize_graph
from dymu_rt.training.common import pretrain_steps
from dymu_rt.training.phn import load_phn_bn


def dymu_budget(run, stages: tuple[str, ...] = (), controller: bool = False) -> str:
    """The training steps behind a row of a DYMU run: the shared pre-training (``anchor_init``
    shared trains one stream instead of N), the anchor, then ``stages`` ("edge", "weight",
    "phn-bn"), steps x batch (and the controller batch when ``controller``)."""
    cfg = run.preset().train
    parts = []
    if cfg.anchor_init == "shared":
        parts.append(f"shared pre-training {pretrain_steps(cfg)}")
    parts.append(f"anchor {cfg.anchor_steps}")
    steps = {"edge": f"edge {cfg.edge_steps}", "weight": f"weight {cfg.weight_steps}",
             "phn-bn": f"PHN-BN {cfg.phn_steps or cfg.weight_steps}"}
    parts += [steps[s] for s in stages]
    return " + ".join(parts) + f" steps x batch {cfg.anchor_batch}" + \
        (f" (controller batch {cfg.controller_batch})" if controller else "")


@register_method
class SingleTask(Method):
    """The N single-task nets: a DYMU run's anchor, deployed as its identity tree."""

    name = "single-task"

    def label(self, cfg: dict) -> str:
        return "single-task"

    def budget(self, run) -> str:
        return dymu_budget(run)

    def rows(self, run, retrained: Optional[dict], loaded=None) -> list[dict]:
        preset, anchor, _, _ = loaded or run.load_all()
        ident = identity_table(anchor.num_layers, len(preset.tasks))
        graph = lower_tree(anchor, ident)
        module = materialize_graph(anchor, graph, preset.mean, preset.std)
        rows = [{"label": self.label({}), "run": str(run.path), "module": module, "budget": self.budget(run),
                 "forward": lambda x, a=anchor: a(x), "reference": True,       # Δ_T's single-task reference
                 "deploy": {"kind": "static", "method": self.name, "graph": graph, "weights_id": state_id(module)}}]
        if retrained is not None and self.name in retrained:
            rows.append(DYMU_RETRAINED.row(run, preset, ident, *retrained[self.name], self.label({}),
                                           "single-task retrained (control)", control=True))
        return rows


@register_method
class PhnBn(Method):
    """PHN-BN: the shared tree (every head on stream 0's top node) with a BN hypernet; the
    deployed row folds the BN of uniform r (the product has no r-switched PHN-BN bundle)."""

    name = "phn-bn"
    done_stage = "phn-bn"

    def label(self, cfg: dict) -> str:
        return "PHN-BN (uniform r)"

    def budget(self, run) -> str:
        return dymu_budget(run, ("phn-bn",), controller=True)

    def rows(self, run, retrained: Optional[dict], loaded=None) -> list[dict]:
        if not run.stage_done(self.done_stage):
            return []
        preset = (loaded or run.load_all())[0]
        n = len(preset.tasks)
        r = torch.full((n,), 1.0 / n)
        phn = load_phn_bn(run)
        with torch.no_grad():
            deltas = phn.hyper(r, torch.zeros(())).reshape(-1)
        graph = lower_tree(phn.net, phn.parents, phn.head_streams)
        module = materialize_graph(with_bn_deltas(phn.net, deltas), graph, preset.mean, preset.std)
        return [{"label": self.label({}), "run": str(run.path), "module": module, "budget": self.budget(run),
                 "forward": lambda x, p=phn, r=r: p(x, r),
                 "deploy": {"kind": "static", "method": self.name, "graph": graph, "weights_id": state_id(module)}}]


@register_method
class DymuRetrained(Method):
    """A DYMU tree (or the identity tree, the control) trained again as a static net
    (:mod:`dymu_rt.training.retrain`, ``compare --retrain``)."""

    name = "dymu-retrained"

    def row(self, run, preset, parents, net, summary: dict, of: str, label: str, control: bool = False) -> dict:
        """The row of tree ``parents`` retrained as ``net``, beside row ``of``."""
        graph = lower_tree(net, parents)
        module = materialize_graph(net, graph, preset.mean, preset.std)
        return {"label": label, "run": str(run.path), "budget": retrain_budget(run, summary, control),
                "module": module,
                "retrain_of": of, "retrain": {k: summary[k] for k in ("step", "batch", "init")},
                "forward": lambda x, a=net, p=parents: a(x, p),
                "deploy": {"kind": "static", "method": self.name, "graph": graph, "weights_id": state_id(module)}}


def retrain_budget(run, summary: dict, control: bool = False) -> str:
    """The training-budget cell of a retrained tree: its own steps, then what found the tree
    (``control``: the single-task streams, trained before by the anchor stage)."""
    before = (dymu_budget(run) if control else dymu_budget(run, ("edge", "weight"), controller=True)).replace(
        " (controller batch", "; controller batch")
    return (f"retrain {summary['step']} steps x batch {summary['batch']} from "
            f"{'the anchor' if summary['init'] == 'anchor' else 'the anchor init (†)'} "
            f"({'after' if control else 'tree found by'}: {before.rstrip(')')})")


SINGLE_TASK, PHN_BN, DYMU_RETRAINED = (get_method(c.name) for c in (SingleTask, PhnBn, DymuRetrained))
