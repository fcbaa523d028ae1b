"""Data-parallel training under ``torchrun``: process group, sharding, DDP, synced BN.

``torchrun --nproc-per-node N -m dymu_rt.cli train ...`` starts N copies of the CLI with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in the environment; :meth:`Distributed.from_env`
joins them into one process group (NCCL on CUDA, gloo on CPU). A plain ``dymu-rt train``
is a world of one and touches nothing here.

The contract every stage keeps:

* ``--batch`` is the global batch; rank r trains on its own contiguous slice of every
  global batch (``dymu_rt.training.loader``), and DistributedDataParallel averages the
  gradients, so one step of N ranks is one step of the full batch.
* Every rank builds the same model from the same seed and loads the same resumable state,
  so all ranks start (and resume) at the same step with the same weights.
* Only rank 0 writes the run folder; ranks wait for it at stage boundaries
  (:meth:`Distributed.barrier`).

What "the same as one process" means: with per-pixel mean losses over equal-sized shards
whose valid-pixel counts are equal (procedural scenes label every pixel), the DDP gradient
is the full-batch gradient up to float summation order. BatchNorm in training mode is the
exception: each rank normalizes with its own shard's statistics unless ``--sync-bn``
(:func:`sync_batchnorm`) makes every BN use the statistics of the global batch. Frozen
anchors (the controller stages, PHN-BN) run BN in eval mode, so nothing differs there.
"""

from __future__ import annotations

import datetime
import os
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from dymu_rt.core.errors import DymuError, ValidationError


class PeerFailed(DymuError):
    """Rank 0 refused the run (bad option, bad run folder); the other ranks stop with it."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the data-parallel job (a world of one when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the rank that writes the run folder and prints progress."""
        return self.rank == 0

    # -- set-up ---------------------------------------------------------------------
    @staticmethod
    def launched() -> bool:
        """True when torchrun (or another launcher) set WORLD_SIZE > 1 for this process."""
        try:
            return int(os.environ.get("WORLD_SIZE", "1")) > 1
        except ValueError:
            return False

    @staticmethod
    def from_env(device: torch.device, timeout_s: float = 1800.0) -> "Distributed":
        """Join (or reuse) the process group described by torchrun's environment.

        ``device`` is this rank's device: NCCL is used for CUDA, gloo otherwise.
        """
        if not Distributed.launched():
            return Distributed()
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except (KeyError, ValueError) as e:
            raise ValidationError(f"torchrun environment is incomplete or malformed ({e}); "
                                  "launch with `torchrun --nproc-per-node N -m dymu_rt.cli train ...`") \
                from None
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            kw = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kw)
        return Distributed(rank, world, local, backend)

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives ----------------------------------------------------------------
    def barrier(self) -> None:
        """Wait until every rank gets here (a no-op in a world of one)."""
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small JSON-like values only)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's tensor on every rank (same shape and dtype everywhere)."""
        if self.enabled:
            dist.broadcast(t, src=0)
        return t

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a (detached) tensor over ranks, e.g. a loss to log."""
        if not self.enabled:
            return value
        v = value.detach().clone()
        dist.all_reduce(v)
        return v / self.world_size

    def main_first(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` on rank 0 (it may write the run folder); every rank gets its result.

        The result must be small and JSON-like (it is broadcast). A DymuError on rank 0
        stops every rank: rank 0 raises it, the others raise :class:`PeerFailed` with the
        same message and exit code, so no rank waits forever.
        """
        if not self.enabled:
            return work()
        result = None
        if self.is_main:
            try:
                result = work()
            except DymuError as e:
                self.broadcast_object((str(e), e.exit_code, None))
                raise
        message, code, result = self.broadcast_object((None, 0, result))
        if message is not None:
            exc = PeerFailed(f"rank 0: {message}")
            exc.exit_code = code
            raise exc
        return result

    # -- data parallelism -------------------------------------------------------------
    def local_batch(self, global_batch: int, option: str = "--batch") -> int:
        """This rank's share of a global batch (which every rank must divide evenly)."""
        if global_batch % self.world_size:
            raise ValidationError(f"{option} {global_batch} does not split over {self.world_size} "
                                  f"processes; give a multiple of {self.world_size}")
        return global_batch // self.world_size

    def wrap(self, module: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
        """``module`` under DistributedDataParallel (itself in a world of one).

        DDP broadcasts rank 0's parameters and buffers at construction, so ranks that built
        or loaded different weights would still start equal (they load the same ones).
        """
        if not self.enabled:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return DDP(module, device_ids=ids, output_device=ids[0] if ids else None,
                   find_unused_parameters=find_unused)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``module`` itself)."""
    return getattr(module, "module", module)


# -- synchronized BatchNorm --------------------------------------------------------------
# torch.nn.SyncBatchNorm only runs on GPUs and replaces BN modules by new ones, which would
# orphan the references the anchor net keeps to its modulated BNs. This one keeps every
# module (and its class, state-dict names and Δγ/Δβ modulation) and only changes how a BN
# in training mode gets its statistics: from the whole global batch, through two
# differentiable all-reduces (sum, then the centred sum of squares: the two-pass variance
# matches F.batch_norm to float precision, E[x²]−E[x]² would not). Works with gloo and NCCL.

class _AllSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the incoming gradients: each
    rank's statistics feed every rank's loss, so each rank's inputs get all of their share."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = t.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        g = grad.clone()
        dist.all_reduce(g)
        return g


def _all_sum(t: torch.Tensor) -> torch.Tensor:
    return _AllSum.apply(t)


def _synced_bn_forward(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    if not self.training:
        return type(self).forward(self, x)
    delta = getattr(self, "delta", None)
    weight, bias = self.weight, self.bias
    if delta is not None:
        weight, bias = weight + delta[0], bias + delta[1]
    xf = x.float()                                     # statistics in fp32 (also under autocast)
    c = xf.shape[1]
    count = torch.tensor([xf.numel() / c], dtype=torch.float32, device=xf.device)
    s = _all_sum(torch.cat([xf.sum((0, 2, 3)), count]))
    n = s[c]
    mean = s[:c] / n
    centred = xf - mean.view(1, c, 1, 1)
    var = _all_sum((centred * centred).sum((0, 2, 3))) / n
    y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
    if weight is not None:
        y = y * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)
    if self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            unbiased = var.detach() * (n / (n - 1)).clamp_min(0)
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
    return y


def sync_batchnorm(module: nn.Module, dist: Distributed) -> list[nn.Module]:
    """Make every BatchNorm2d of ``module`` use global-batch statistics while training.

    Returns the BNs changed (give them to :func:`unsync_batchnorm` to undo). A no-op in a
    world of one: there the local batch is the global batch.
    """
    if not dist.enabled:
        return []
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.forward = types.MethodType(_synced_bn_forward, bn)
    return bns


def unsync_batchnorm(bns: list[nn.Module]) -> None:
    """Undo :func:`sync_batchnorm` (before evaluation on one rank)."""
    for bn in bns:
        bn.__dict__.pop("forward", None)
