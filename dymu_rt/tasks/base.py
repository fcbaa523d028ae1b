"""What every task kind shares: the :class:`Task` and :class:`Meter` contracts and helpers.

A task turns the raw output of its head into a loss, streaming metrics, a postprocessed
array and a picture. Conventions all kinds follow (see docs/INTERFACES.md, "Tasks"):

* ``pred`` is the raw head output of a batch, [B, C, H, W] (dense tasks) or [B, C]
  (classification). ``target`` and ``mask`` follow the data-sample contract with a batch
  dimension; ``mask`` (True = valid) may be ``None`` for "all valid".
* When ``pred`` and ``target`` differ in spatial size, losses and meters upsample ``pred``
  bilinearly (``align_corners=False``) to the target size before anything else, so heads
  may predict at a lower resolution than the labels.
* Losses average over valid elements. A batch with no valid element gives a loss of 0
  that is still connected to the graph (``backward`` works, nothing is NaN).
* Meters accumulate sufficient statistics (confusion matrices, sums, histograms) over
  batches, never averages of per-batch averages, so the result does not depend on how a
  dataset is batched. Ratio metrics (IoU, accuracy, δ, "within t°", F-measures) are in
  percent (0-100), as the paper's tables report them. A meter that has seen no valid
  element reports NaN.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Mapping, Optional

import torch
import torch.nn.functional as F

from dymu_rt.core.errors import DataError
from dymu_rt.core.kinds import TaskOutput


class Meter(abc.ABC):
    """Streaming metrics of one task over a dataset: ``update`` per batch, ``compute`` once."""

    @abc.abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Add one batch (raw ``pred``, ``target`` and ``mask`` as the task's loss takes them)."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """The metrics over every batch seen so far (metric name -> value)."""


class Task(TaskOutput):
    """One task of a multi-task net: its output (:class:`~dymu_rt.core.kinds.TaskOutput`:
    head size, postprocessing, picture) plus loss and metrics.

    Subclasses set the class attributes ``primary_metric`` and ``metric_directions``
    (metric name -> True if higher is better); the keys of ``metric_directions`` are
    exactly the keys a meter's ``compute`` returns.
    """

    primary_metric: ClassVar[str]
    metric_directions: ClassVar[Mapping[str, bool]]

    @abc.abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scalar training loss of a batch (unweighted: the caller multiplies by ``loss_weight``)."""

    @abc.abstractmethod
    def new_meter(self) -> Meter:
        """A fresh streaming meter for this task's metrics."""


# -- tensor helpers shared by the dense kinds ---------------------------------------------

def match_size(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``pred`` [B, C, h, w] bilinearly resized to ``size`` = (H, W) when it differs."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=tuple(size), mode="bilinear", align_corners=False)


def batch_hw(target: torch.Tensor, task: Task) -> torch.Tensor:
    """A dense target as [B, H, W]: drops a singleton channel dim ([B, 1, H, W] -> [B, H, W])."""
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 3:
        raise DataError(f"task {task.name!r}: target has shape {tuple(target.shape)}, "
                              f"expected [B, H, W] or [B, 1, H, W]")
    return target


def valid_mask(mask: Optional[torch.Tensor], shape: tuple[int, ...], task: Task,
               device: torch.device) -> torch.Tensor:
    """The validity mask as a bool tensor of ``shape`` (all True when ``mask`` is None)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise DataError(f"task {task.name!r}: mask has shape {tuple(mask.shape)}, "
                              f"expected {tuple(shape)}")
    return mask.to(device=device, dtype=torch.bool)


def zero_loss(pred: torch.Tensor) -> torch.Tensor:
    """A 0 that depends on ``pred``: the loss of a batch without any valid element.

    ``nan_to_num`` keeps it 0 even if a diverged head produced non-finite values.
    """
    return torch.nan_to_num(pred, nan=0.0, posinf=0.0, neginf=0.0).sum() * 0.0


def masked_mean(values: torch.Tensor, valid: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``valid`` elements; :func:`zero_loss` when there are none."""
    n = int(valid.sum())
    if n == 0:
        return zero_loss(pred)
    return values[valid].sum() / n


def nan_if_empty(num: float, den: float, scale: float = 1.0) -> float:
    """``scale * num / den``, NaN when nothing was counted."""
    return float("nan") if den == 0 else float(scale * num / den)
