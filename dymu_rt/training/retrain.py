"""Stage "retrain": one DYMU tree trained again as a static multi-task net (the paper's Δ_T).

The paper's architecture evaluation (DYMU Sec. 4.5, Table 5; supplement C, Table A-1) takes
the tree the edge hypernet predicts for **uniform r** at c = 0 and c = 1 and, "similar to
LTB", **retrains** it as a fixed architecture before reporting Δ_T; by default from the
**anchor net's weights** (the rows without †), and alternatively from the ImageNet weights
the anchor's streams started from (the rows with †). The paper does not say for how long.

Here:

* ``init`` "anchor" (the paper's default): every node of the tree starts from the trained
  anchor's node (stream j, layer l) — the weights the deployed tree runs, without the weight
  hypernet's BN deltas. "base" (the paper's †): the weights the anchor itself started from,
  i.e. the run's ``anchor_init`` (the shared pre-training's backbone in every stream,
  ``pretrained:FILE``, or independent random streams) — this project's stand-in for
  ImageNet. Heads follow the same rule.
* ``steps`` (default: the anchor stage's ``anchor_steps``): the retrain is one more
  single-task-length fine-tune of the tree, with the anchor stage's optimizer, learning
  rate schedule (its length set to ``steps``), batch and loss (Σ_i w_i L_i, every task
  active: uniform r up to the factor 1/N). The paper is silent on the length; this makes
  the retrained tree and the single-task streams it is compared with trained for as many
  steps on the same data, and ``--retrain-steps`` changes it. The anchor stage's L2-SP term
  (``anchor_l2sp`` > 0: toward the weights the streams started from) is part of that loss.

Training runs the anchor-net code itself on the fixed tree (``anchor.forward(x, parents)``:
nodes no head reaches are never run and get no gradient) through the anchor stage's
resumable loop (:func:`dymu_rt.training.anchor._loop`: state every ``save_every`` steps, a
killed run continues from the last save, same :class:`~dymu_rt.training.setup.TrainSetup`).
What is deployed is :func:`dymu_rt.models.graph.lower_tree` of the tree over the trained
net: exactly the tree's nodes and heads, so its params and MACs are the tree's.

A retrain is a stage of the DYMU run, named by what determines it —
``retrain-<topology id>-<init>-<steps>`` — so a finished one is reused (two c values that
give the same tree share one), and another tree, init or length is a new stage: the net
is ``RUN/<stage>.safetensors``, its resumable state ``RUN/state/<stage>.json``, its loss
log ``RUN/logs/<stage>.jsonl``, its summary in ``config.json``'s ``stages``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.core.tree import canonicalize, identity_table, topology_id, used_nodes
from dymu_rt.training.anchor import _loop, initialize_streams, l2sp_term
from dymu_rt.run.layout import RunDir, load_module, save_module
from dymu_rt.run.schema import MAX_SAMPLES
from dymu_rt.training.common import anchor_lr, check_positive, seed_everything
from dymu_rt.training.setup import TrainSetup

#: where a retrained tree starts: the paper's default (anchor net weights) and its † (the
#: weights the anchor started from; ImageNet in the paper)
RETRAIN_INITS = ("anchor", "base")


def retrain_steps(run: RunDir, steps: Optional[int] = None) -> int:
    """The retrain length: ``steps``, or the run's ``anchor_steps`` (validated)."""
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_SAMPLES:
            raise ValidationError(f"--retrain-steps {steps!r} is not valid; expected an integer from 1 to "
                                  f"{MAX_SAMPLES:,} (the bound of a run's stage lengths)")
        return steps
    return int(run.preset().train.anchor_steps)


def check_init(init: str) -> str:
    """ValidationError for an unknown ``--retrain-init``."""
    if init not in RETRAIN_INITS:
        raise ValidationError(f"--retrain-init {init!r} is not valid; expected one of {', '.join(RETRAIN_INITS)}")
    return init


def stage_name(parents, init: str, steps: int) -> str:
    """The run stage that holds the retrain of tree ``parents`` from ``init`` for ``steps``."""
    return f"retrain-{topology_id(canonicalize(parents))}-{init}-{steps}"


def _data(run: RunDir) -> tuple[str, int, Optional[int]]:
    """(data source, seed, n_train) the run was trained with (read, never recorded here)."""
    cfg = run.read_config()
    opts = cfg.get("data_options") or {}
    return cfg["data"], int(opts.get("seed", 0)), opts.get("n_train")


def _start(run: RunDir, init: str, setup: TrainSetup, save_every: int, progress: bool) -> torch.nn.Module:
    """A fresh anchor-shaped net with the weights ``init`` names."""
    preset = run.preset()
    if init == "anchor":
        net = preset.build()
        load_module(net, run.module_path("anchor"), "anchor checkpoint")
    else:
        data, seed, n_train = _data(run)
        seed_everything(seed)
        net = setup.dev.prepare(preset.build())
        # The run's anchor_init: a finished shared pre-training is loaded, not redone.
        if not initialize_streams(run, net, data, seed, save_every, n_train, progress, setup):
            raise ValidationError(f"{run.path}: the anchor's shared pre-training did not finish")
    return setup.dev.prepare(net)


def retrain_tree(run: RunDir, parents, init: str = "anchor", steps: Optional[int] = None,
                 setup: Optional[TrainSetup] = None, save_every: int = 100, progress: bool = True,
                 stop_after: Optional[int] = None, on_step: Optional[Callable[[int], None]] = None
                 ) -> tuple[Optional[torch.nn.Module], dict[str, Any]]:
    """Retrain tree ``parents`` of DYMU run ``run`` as a static net, or reuse a finished
    retrain; returns (the trained anchor-shaped net in eval mode, frozen, or None when
    ``stop_after`` stopped it first; the stage summary). ``stop_after`` / ``on_step``: as in
    :func:`dymu_rt.training.anchor.train_anchor` (tests simulate a killed run with them)."""
    setup = setup or TrainSetup()
    check_init(init)
    check_positive(save_every, "--save-every")
    steps = retrain_steps(run, steps)
    if not run.stage_done("anchor"):
        raise ValidationError(f"{run.path}: the anchor stage has not finished; nothing to retrain from")
    preset = run.preset()
    p = canonicalize(np.asarray(parents))
    stage = stage_name(p, init, steps)
    if run.stage_done(stage):
        net = preset.build()
        load_module(net, run.module_path(stage), "retrained tree checkpoint")
        return net.freeze(), run.read_config()["stages"][stage]
    data, seed, n_train = _data(run)
    fresh = run.load_state(stage) is None
    net = _start(run, init, setup, save_every, progress) if fresh else setup.dev.prepare(preset.build())
    # The anchor stage's loss includes its L2-SP term toward the weights the streams started
    # from (anchor_l2sp > 0); the retrain carries it too, so the identity tree retrained from
    # base is the anchor stage again and the control row gets the single-task recipe.
    # (on the tree's own nodes only: the others are not deployed and stay as they are)
    extra = l2sp_term(run, net, data, seed, save_every, n_train, setup, used=used_nodes(p))
    seed_everything(seed)                      # a resumed run restores the RNG state saved with it
    cfg = dataclasses.replace(preset.train, anchor_steps=steps)
    tree = ([list(map(int, row)) for row in p], None)
    done = _loop(run, stage, net, steps, lambda step: anchor_lr(cfg, step), setup, data, seed, save_every,
                 n_train, progress, f"retrain tree {stage.split('-')[1][:8]} from {init}", tree=tree,
                 stop_after=stop_after, on_step=on_step, extra_loss=extra)
    if not done:
        state = run.load_state(stage)
        return None, {"done": False, "step": int(state[1]["step"]) if state is not None else 0}
    net.eval()
    if setup.dist.is_main:
        save_module(net, run.module_path(stage))
        run.mark_done(stage, {"step": steps, "init": init, "parents": [list(map(int, row)) for row in p],
                              "batch": preset.train.anchor_batch, "trained_with": setup.to_dict()})
        run.clear_state(stage)
    setup.dist.barrier()
    return net.cpu().freeze(), run.read_config()["stages"][stage]




def retrain_uniform(run: RunDir, cs=(0.0, 1.0), init: str = "anchor", steps: Optional[int] = None,
                    setup: Optional[TrainSetup] = None, save_every: int = 100, progress: bool = True,
                    control: bool = True) -> dict[Any, tuple[torch.nn.Module, dict[str, Any]]]:
    """The paper's protocol on DYMU run ``run``: for each c of ``cs``, the tree its edge
    hypernet predicts at uniform r, retrained (:func:`retrain_tree`; finished ones reused).
    Returns c -> (net, stage summary); with ``control`` also "single-task" -> the identity
    tree (the N single-task streams) retrained the same way: a retrain from the anchor
    trains ``steps`` more than the anchor did, and this row says how much of a retrained
    tree's Δ_T that extra training alone gives."""
    check_init(init)
    steps = retrain_steps(run, steps)
    if not (run.stage_done("anchor") and run.stage_done("edge")):
        raise ValidationError(f"{run.path} has no trained DYMU controller (stages anchor and edge); "
                              "--retrain retrains the tree its edge hypernet predicts")
    edge = run.load_edge_hypernet()
    n = len(run.preset().tasks)
    r = torch.full((n,), 1.0 / n)
    trees: dict[Any, Any] = {}
    if control:
        trees["single-task"] = identity_table(edge.num_layers, n)
    for c in cs:
        with torch.no_grad():
            trees[float(c)] = edge.architecture(r, torch.tensor(float(c)))
    return {key: retrain_tree(run, parents, init, steps, setup, save_every, progress)
            for key, parents in trees.items()}


__all__ = ["RETRAIN_INITS", "retrain_tree", "retrain_uniform", "retrain_steps", "stage_name", "check_init"]
