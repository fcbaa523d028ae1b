"""Runs of the static-architecture methods (AdaShare, the DAG network) beside DYMU's.

One command shape trains every method (``dymu-rt train --method dymu|adashare|dag``); the
stage lengths come from the same overrides: ``--anchor-steps`` is the warm-up,
``--edge-steps`` the policy/architecture search, ``--weight-steps`` the retrain (AdaShare)
or fine-tune (DAG). Without overrides the warm-up and the final stage take the preset's
``anchor_steps`` (the budget the single-task nets get, so Δ_T compares like with like)
and the search its ``edge_steps``.

A static run directory::

    RUN/config.json          method, method_config, preset, data, stages (warmup, search, final)
    RUN/model.safetensors    the trained network (the final stage's weights)
    RUN/architecture.json    the static graph (dymu_rt.models.graph) + the method's decisions

Stages are resumable within a stage: every ``--save-every`` steps :class:`StageProgress`
saves the network, every optimizer, the fp16 loss scale and the RNG states
(``state/<stage>-progress.json`` + its tensor file, written by
:meth:`~dymu_rt.train.checkpoint.RunDir.save_state`: the JSON rename is the commit), and a
re-run continues from there on the same data stream (the loader's batches are a function of
the step). A finished stage's result is saved (``state/<stage>.safetensors``) and its
progress state removed; a re-run continues after the last finished stage. Every schedule
of the static methods (learning rate, AdaShare's temperature and curriculum) is a function
of the step, so the step restores them.

Where and how a stage trains comes from the same :class:`~dymu_rt.train.setup.TrainSetup`
as DYMU's stages: device, precision (autocast; the losses, Gumbel sampling and sigmoid sums
of the upper-level parameters stay in fp32), channels-last and input workers. Saved tensors
are CPU tensors, so a run trained on a GPU loads (and resumes) on a CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional

import torch

from dymu_rt.models.graph import StaticGraph, materialize_graph
from dymu_rt.errors import CheckpointError, ValidationError
from dymu_rt.train.checkpoint import (RunDir, load_module, load_tensors, load_state_into, optimizer_tensors,
                                      restore_optimizer, save_module)
from dymu_rt.train.common import JsonlLog, restore_rng, rng_state
from dymu_rt.train.distributed import sync_batchnorm, unsync_batchnorm
from dymu_rt.train.setup import TrainSetup, restore_scaler, scaler_meta
from dymu_rt.utils.io import atomic_write_json, read_json

METHODS = ("dymu", "adashare", "dag")
STATIC_STAGES = ("warmup", "search", "final")
ARCHITECTURE = "architecture.json"
MODEL = "model"


def method_of(run: RunDir) -> str:
    """The method a run was trained with ("dymu" for runs that predate the option)."""
    return str(run.read_config().get("method", "dymu"))


def check_method(method: str, flow: Optional[int]) -> None:
    """ValidationError for an unknown method or a --flow that does not apply."""
    if method not in METHODS:
        raise ValidationError(f"--method '{method}' is not valid; expected one of {', '.join(METHODS)}")
    if flow is not None and method != "dag":
        raise ValidationError(f"--flow applies to --method dag only (got --method {method})")
    if flow is not None and (isinstance(flow, bool) or not isinstance(flow, int) or flow < 1):
        raise ValidationError(f"--flow {flow!r} is not valid; expected an integer >= 1 (the flow constant M)")


def method_config(method: str, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
    """The stored settings of a new static run (stage lengths from the DYMU overrides)."""
    t = preset.train
    steps = {"warmup_steps": overrides.get("anchor_steps") or t.anchor_steps,
             "search_steps": overrides.get("edge_steps") or t.edge_steps,
             "final_steps": overrides.get("weight_steps") or t.anchor_steps,
             "batch": overrides.get("anchor_batch") or t.anchor_batch}
    if method == "adashare":
        from dymu_rt.train.adashare import AdaShareConfig

        return dataclasses.asdict(AdaShareConfig(**steps))
    from dymu_rt.models.dag import default_spec
    from dymu_rt.train.dag import DagConfig

    flow = 3 if flow is None else flow
    return dataclasses.asdict(DagConfig(**steps, flow=flow, states=default_spec(preset, flow).states))


def check_preset(method: str, preset) -> None:
    """ValidationError when ``method`` cannot train on ``preset``'s network: AdaShare skips
    residual blocks (a skipped block is the identity), which VGG-16 has none of."""
    if method == "adashare" and preset.backbone.kind == "vgg16":
        raise ValidationError(f"--method adashare skips residual blocks; preset '{preset.name}' has a VGG-16 "
                              "backbone without any (use --method dag or dymu, or a ResNet/MobileNetV2 preset)")


def new_run_extra(method: str, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
    """The config entries a new static run starts with."""
    return {"method": method, "method_config": method_config(method, preset, overrides, flow),
            "stages": {s: {"done": False} for s in STATIC_STAGES}}


def check_resume(run: RunDir, method: str, overrides: dict, flow: Optional[int]) -> None:
    """Refuse resuming a run of another method, or with other stage lengths / flow."""
    have = method_of(run)
    if have != method:
        raise ValidationError(f"{run.path} holds a run of method '{have}', not '{method}'; use another --out")
    if method == "dymu":
        return
    cfg = run.read_config()
    want = method_config(method, run.preset(), overrides, flow if flow is not None else
                         cfg["method_config"].get("flow"))
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


def build_net(run: RunDir):
    """A fresh network of the run's method (AdaShareNet or DagNet)."""
    cfg = run.read_config()
    preset = run.preset()
    if cfg.get("method") == "adashare":
        from dymu_rt.models.adashare import AdaShareNet

        return AdaShareNet(preset)
    if cfg.get("method") == "dag":
        from dymu_rt.train.dag import DagConfig, dag_spec

        return _dag(preset, DagConfig(**cfg["method_config"]), dag_spec)
    raise CheckpointError(f"{run.path} is not a static-architecture run (method {cfg.get('method', 'dymu')!r})")


def _dag(preset, dc, dag_spec):
    from dymu_rt.models.dag import DagNet

    return DagNet(preset, dag_spec(preset, dc))


def save_stage(run: RunDir, stage: str, net: torch.nn.Module, summary: dict[str, Any],
               setup: Optional[TrainSetup] = None) -> None:
    """A finished stage: its network state, then the stage marked done with ``summary``,
    then its progress state (:class:`StageProgress`) removed (a kill before that leaves a
    stale progress file that nothing reads: the stage is done). Under torchrun rank 0
    writes and every rank waits for it."""
    setup = setup or TrainSetup()
    if setup.dist.is_main:
        save_module(net, run.path / "state" / f"{stage}.safetensors")
        run.mark_done(stage, {**summary, "trained_with": setup.to_dict()})
        run.clear_state(f"{stage}-progress")
    setup.dist.barrier()


def load_stage(run: RunDir, stage: str, net: torch.nn.Module) -> torch.nn.Module:
    """Load a finished stage's network state into ``net``."""
    return load_module(net, run.path / "state" / f"{stage}.safetensors", f"{stage} state")


class StageProgress:
    """Mid-stage checkpoints of one static stage, and the loop over its steps.

    ``opts`` names each optimizer (its tensors are stored under that prefix); ``log_stage``
    is the "stage" field of this stage's records in the method's log, which a resume
    truncates after the restored step. ``on_step(stage, step)`` is called after every
    step (after the save of that step): tests raise from it to simulate a killed run.

    Under torchrun :attr:`model` is ``net`` under DistributedDataParallel (built here, once
    the stage has fixed which parameters train, since DDP only syncs those), with
    ``find_unused_parameters``: a skipped AdaShare block and a masked DAG edge get no
    gradient, and which ones varies from step to step in the search. Terms computed
    outside the forward (Gumbel samples of the policy, σ(A, B, Γ), the sparsity, sharing
    and squeeze losses) are the same on every rank (same weights, same seeded noise), so
    the averaged gradient is still the full-batch one. Every rank loads the same state;
    rank 0 alone writes it. With ``--sync-bn`` the BNs use global-batch statistics while
    the stage trains.
    """

    def __init__(self, run: RunDir, stage: str, net: torch.nn.Module, opts: dict[str, torch.optim.Optimizer],
                 scaler: "torch.amp.GradScaler", setup: TrainSetup, save_every: int,
                 log: Optional[JsonlLog] = None, log_stage: Optional[str] = None,
                 on_step: Optional[Callable[[str, int], None]] = None) -> None:
        self.run, self.stage, self.net, self.opts, self.scaler = run, stage, net, opts, scaler
        self.setup, self.save_every, self.on_step = setup, save_every, on_step
        self.name = f"{stage}-progress"            # save_stage removes it when the stage is done
        self.start = 0
        self.job = None
        state = run.load_state(self.name)
        if state is not None:
            self.start = self._restore(*state)
            if log is not None and setup.dist.is_main:
                log.truncate_after(self.start, log_stage or stage)
        setup.dist.barrier()                       # nobody writes a state another rank still reads
        self.model = setup.dist.wrap(net, setup.device, find_unused=True)

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> int:
        path = self.run.state_tensors_path(self.name, meta)
        load_state_into(self.net, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                        path, "training state")
        for prefix, opt in self.opts.items():
            saved = meta["optimizer"].get(prefix)
            if not isinstance(saved, dict):
                raise CheckpointError(f"training state {path} has no state of optimizer '{prefix}'; delete "
                                      "the state/ folder of the run to restart the stage")
            restore_optimizer(opt, tensors, saved, prefix=prefix, path=path)
        restore_rng(tensors, self.setup.device)
        restore_scaler(self.scaler, meta.get("scaler"))
        return int(meta["step"])

    def save(self, step: int, extra: Optional[dict[str, Any]] = None) -> None:
        """The state after ``step`` steps (CPU tensors; atomic, see RunDir.save_state); rank 0 only."""
        if not self.setup.dist.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        opt_meta = {}
        for prefix, opt in self.opts.items():
            t, opt_meta[prefix] = optimizer_tensors(opt, prefix)
            tensors.update(t)
        tensors.update(rng_state(self.setup.device))
        self.run.save_state(self.name, tensors, {"step": step, "optimizer": opt_meta,
                                                 "scaler": scaler_meta(self.scaler), **(extra or {})})

    def steps(self, total: int, bar, description: str,
              extra: Optional[Callable[[int], dict[str, Any]]] = None) -> Iterator[int]:
        """Yield the steps start..total-1; after each, save every ``save_every`` steps
        (``extra(step)``: informative entries stored with the state) and call on_step."""
        self.job = bar.add_task(description, total=total, completed=self.start, info="")
        synced = sync_batchnorm(self.net, self.setup.dist) if self.setup.sync_bn else []
        try:
            for step in range(self.start, total):
                yield step
                done = step + 1
                bar.update(self.job, advance=1)
                if done % self.save_every == 0 and done < total:
                    self.save(done, extra(done) if extra is not None else None)
                if self.on_step is not None:
                    self.on_step(self.stage, done)
        finally:
            unsync_batchnorm(synced)

    def mean(self, value: torch.Tensor) -> float:
        """A (detached) loss as the mean over ranks, read on the host (a device sync)."""
        return float(self.setup.dist.mean(value.detach()))


def save_result(run: RunDir, net: torch.nn.Module, graph: StaticGraph, decisions: dict[str, Any]) -> None:
    """The run's deliverables: model weights and the static graph (+ method decisions)."""
    save_module(net, run.module_path(MODEL))
    atomic_write_json(run.path / ARCHITECTURE, {"graph": graph.to_json(), **decisions})


def load_static(run: RunDir):
    """(preset, trained network in eval mode, static graph, decisions) of a finished run."""
    if not run.stage_done("final"):
        raise CheckpointError(f"{run.path}: the final stage has not finished; run "
                              f"`dymu-rt train --out {run.path}` to complete it")
    net = build_net(run)
    load_state_into(net, load_tensors(run.module_path(MODEL), "model checkpoint"), run.module_path(MODEL),
                    "model checkpoint")
    arch = read_json(run.path / ARCHITECTURE, "architecture")
    try:
        graph = StaticGraph.from_json(arch["graph"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{run.path / ARCHITECTURE} is malformed ({e})") from None
    return run.preset(), net.eval(), graph, {k: v for k, v in arch.items() if k != "graph"}


def static_module(run: RunDir):
    """(preset, GraphModule of the run's architecture, graph): what the compiler exports."""
    preset, net, graph, _ = load_static(run)
    return preset, materialize_graph(net, graph, preset.mean, preset.std), graph
