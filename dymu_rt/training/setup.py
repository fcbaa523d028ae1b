"""How a training stage is run: device and precision, input workers, data parallelism.

:class:`TrainSetup` bundles :class:`~dymu_rt.training.device.DeviceSetup` (device, precision,
channels-last), the :class:`~dymu_rt.training.distributed.Distributed` job this process belongs
to, the number of input workers and whether BN statistics are synced across ranks. Every
stage takes one (default: CPU, fp32, one process, no workers: what the tests and the
quick start use) and asks it for its batches and its optimizer step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.training.device import DeviceSetup
from dymu_rt.training.distributed import Distributed
from dymu_rt.training.loader import BatchStream


@dataclass(frozen=True)
class TrainSetup:
    """Device, precision, input workers and data parallelism of one training process."""

    dev: DeviceSetup = field(default_factory=DeviceSetup)
    dist: Distributed = field(default_factory=Distributed)
    workers: int = 0
    sync_bn: bool = False

    @staticmethod
    def create(device: Optional[str] = None, precision: Optional[str] = None, channels_last: bool = False,
               workers: Optional[int] = None, sync_bn: bool = False) -> "TrainSetup":
        """Validated settings; joins the torchrun process group when launched by torchrun.

        Under torchrun each rank uses its own GPU (cuda:LOCAL_RANK) with ``--device`` auto
        or cuda; naming one GPU (cuda:N) for several ranks is refused.
        """
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ValidationError(f"--workers {workers!r} is not valid; expected an integer >= 0")
        if Distributed.launched():
            spec = "auto" if device is None else str(device).strip().lower()
            if spec.startswith("cuda:"):
                raise ValidationError(f"--device {spec}: under torchrun every rank uses its own GPU "
                                      "(cuda:LOCAL_RANK); give --device cuda or auto")
            if spec in ("auto", "cuda") and torch.cuda.is_available():
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        dev = DeviceSetup.create(device, precision, channels_last)
        return TrainSetup(dev, Distributed.from_env(dev.device), workers or 0, bool(sync_bn))

    @property
    def device(self) -> torch.device:
        return self.dev.device

    def batches(self, dataset, global_batch: int, seed: int, start_step: int = 0,
                option: str = "--batch") -> BatchStream:
        """This rank's slice of every global batch from ``start_step`` on (see loader)."""
        self.dist.local_batch(global_batch, option)
        return BatchStream(dataset, global_batch, seed, start_step, workers=self.workers,
                           rank=self.dist.rank, world_size=self.dist.world_size,
                           pin_memory=self.dev.is_cuda)

    def to_dict(self) -> dict[str, Any]:
        """What the run records about how a stage was trained."""
        return {**self.dev.to_dict(), "world_size": self.dist.world_size,
                "backend": self.dist.backend, "workers": self.workers, "sync_bn": self.sync_bn}


def backward_step(loss: torch.Tensor, opt: Union[torch.optim.Optimizer, Sequence[torch.optim.Optimizer]],
                  scaler: "torch.amp.GradScaler") -> None:
    """zero_grad, backward and optimizer step, through the fp16 loss scaler when enabled.

    ``opt`` may be several optimizers over disjoint parameters stepped on one loss (the DAG
    search: weights Θ and the upper-level A, B, Γ): one scaler unscales and checks each
    (a step with inf/NaN gradients is skipped for all of them), then one update.
    """
    opts = [opt] if isinstance(opt, torch.optim.Optimizer) else list(opt)
    for o in opts:
        o.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if scaler.is_enabled() and len(opts) > 1:
        # GradScaler skips each optimizer on *its own* inf/NaN check; one loss means one
        # decision: unscale all, and step none of them if any gradient is not finite.
        for o in opts:
            scaler.unscale_(o)
        finite = all(bool(torch.isfinite(p.grad).all()) for o in opts for g in o.param_groups
                     for p in g["params"] if p.grad is not None)
        if not finite:
            scaler.update()
            return
    for o in opts:
        scaler.step(o)
    scaler.update()


def scaler_meta(scaler: "torch.amp.GradScaler") -> Optional[dict]:
    """The GradScaler's state as JSON (None when loss scaling is off)."""
    if not scaler.is_enabled():
        return None
    return {k: (float(v) if isinstance(v, float) else v) for k, v in scaler.state_dict().items()}


def restore_scaler(scaler: "torch.amp.GradScaler", meta: Optional[dict]) -> None:
    """Load a saved GradScaler state (ignored when this run does not scale, or none was saved)."""
    if scaler.is_enabled() and isinstance(meta, dict):
        scaler.load_state_dict(meta)
