"""A static-architecture run directory (AdaShare, the DAG network): its stages and its result.

The pieces every static method's trainer writes with and :mod:`dymu_rt.training.static` reads
with (the run folder's format: :mod:`dymu_rt.run.layout`)::

    RUN/config.json          method, method_config, preset, data, stages (warmup, search, final)
    RUN/model.safetensors    the trained network (the final stage's weights)
    RUN/architecture.json    the static graph (dymu_rt.models.graph) + the method's decisions
    RUN/state/<stage>.safetensors   a finished stage's network state
    RUN/state/<stage>-progress.json (+ .stepK.safetensors)   an unfinished stage's last save
                                    (:class:`StageProgress`, every --save-every steps)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Optional

import torch

from dymu_rt.core.errors import CheckpointError
from dymu_rt.models.graph import StaticGraph
from dymu_rt.run.layout import (ARCHITECTURE, MODEL, RunDir, load_module, load_state_into, optimizer_tensors,
                                restore_optimizer, save_module)
from dymu_rt.training.common import make_split, make_tasks, restore_rng, rng_state, seed_everything
from dymu_rt.run.logs import JsonlLog
from dymu_rt.training.distributed import sync_batchnorm, unsync_batchnorm
from dymu_rt.training.setup import TrainSetup, restore_scaler, scaler_meta
from dymu_rt.core.io import atomic_write_json

class StaticStart(NamedTuple):
    """What a static trainer works with (:func:`start_static`)."""

    setup: TrainSetup
    config: Any
    preset: Any
    tasks: list
    train_set: Any
    log: Optional[JsonlLog]


def start_static(run: RunDir, data: str, seed: int, n_train: Optional[int], setup: Optional[TrainSetup],
                 config_cls: type, log_name: str) -> StaticStart:
    """The set-up both static trainers do before their stages, in this order: the run's
    ``method_config`` as ``config_cls`` (its batch split across ranks), the preset's tasks
    and augmented training split, the log ``logs/<log_name>`` (rank 0 only), the seed."""
    setup = setup or TrainSetup()
    config = config_cls(**run.read_config()["method_config"])
    setup.dist.local_batch(config.batch)
    preset = run.preset()
    tasks = make_tasks(preset)
    train_set = make_split(preset, data, "train", n=n_train, augment=True, seed=seed)
    log = JsonlLog(run.path / "logs" / log_name) if setup.dist.is_main else None
    seed_everything(seed)
    return StaticStart(setup, config, preset, tasks, train_set, log)


def save_stage(run: RunDir, stage: str, net: torch.nn.Module, summary: dict[str, Any],
               setup: Optional[TrainSetup] = None) -> None:
    """A finished stage: its network state, then the stage marked done with ``summary`` (and
    ``trained_with``), then its progress state (:class:`StageProgress`) removed (a kill
    before that leaves a stale progress file that nothing reads: the stage is done). Under
    torchrun rank 0 writes and every rank waits for it."""
    setup = setup or TrainSetup()
    if setup.dist.is_main:
        save_module(net, run.path / "state" / f"{stage}.safetensors")
        run.mark_done(stage, {**summary, "trained_with": setup.to_dict()})
        run.clear_state(f"{stage}-progress")
    setup.dist.barrier()


def load_stage(run: RunDir, stage: str, net: torch.nn.Module) -> torch.nn.Module:
    """Load a finished stage's network state into ``net``."""
    return load_module(net, run.path / "state" / f"{stage}.safetensors", f"{stage} state")


def save_result(run: RunDir, net: torch.nn.Module, graph: StaticGraph, decisions: dict[str, Any]) -> None:
    """The run's deliverables: model weights and the static graph (+ method decisions)."""
    save_module(net, run.module_path(MODEL))
    atomic_write_json(run.path / ARCHITECTURE, {"graph": graph.to_json(), **decisions})


class StageProgress:
    """Mid-stage checkpoints of one static stage, and the loop over its steps.

    ``opts`` names each optimizer (its tensors are stored under that prefix); ``log_stage``
    is the "stage" field of this stage's records in the method's log, which a resume
    truncates after the restored step. ``on_step(stage, step)`` is called after every
    step (after the save of that step): tests raise from it to simulate a killed run.
    Every schedule (learning rate, AdaShare's τ and curriculum) is a function of the step,
    and the data stream opens at it (``TrainSetup.batches(start_step=...)``), so the step,
    the weights, the optimizer states, the RNG states and the loss scale are the whole state.

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
