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

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dymu_rt.errors import DataError, ValidationError


class Meter(abc.ABC):
    """Streaming metrics of one task over a dataset: ``update`` per batch, ``compute`` once."""

    @abc.abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Add one batch (raw ``pred``, ``target`` and ``mask`` as the task's loss takes them)."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """The metrics over every batch seen so far (metric name -> value)."""


class Task(abc.ABC):
    """One task of a multi-task net: head size, loss, metrics, postprocessing, picture.

    Subclasses set the class attributes ``kind``, ``primary_metric`` and
    ``metric_directions`` (metric name -> True if higher is better); the keys of
    ``metric_directions`` are exactly the keys a meter's ``compute`` returns.
    """

    kind: ClassVar[str]
    primary_metric: ClassVar[str]
    metric_directions: ClassVar[Mapping[str, bool]]

    def __init__(self, name: str, out_channels: int, loss_weight: float = 1.0) -> None:
        self.name = name
        self.out_channels = int(out_channels)
        self.loss_weight = float(loss_weight)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, "
                f"out_channels={self.out_channels}, loss_weight={self.loss_weight:g})")

    @abc.abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scalar training loss of a batch (unweighted: the caller multiplies by ``loss_weight``)."""

    @abc.abstractmethod
    def new_meter(self) -> Meter:
        """A fresh streaming meter for this task's metrics."""

    @abc.abstractmethod
    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Turn ONE raw output ([C, H, W] or [C], no batch dimension) into the task's answer."""

    @abc.abstractmethod
    def visualize(self, post: np.ndarray) -> Image.Image:
        """An RGB picture (uint8, PIL) of one postprocessed output."""

    # -- shared checks ---------------------------------------------------------------

    def _check_out(self, out: np.ndarray, ndim: int) -> np.ndarray:
        """``out`` as a float array of ``ndim`` dims whose first dim is ``out_channels``."""
        out = np.asarray(out)
        if out.ndim != ndim or out.shape[0] != self.out_channels:
            want = "[C, H, W]" if ndim == 3 else "[C]"
            raise ValidationError(
                f"task {self.name!r}: raw output has shape {tuple(out.shape)}, expected {want} "
                f"with C = {self.out_channels} (one sample, no batch dimension)")
        return out.astype(np.float32, copy=False)


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
