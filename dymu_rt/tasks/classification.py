"""Image classification (kind "classification"): ``num_classes`` logits per image.

Used by the CIFAR-100 benchmark (20 five-way tasks, one per superclass). Loss:
cross-entropy over the images whose mask is True. Metric: ``accuracy`` (percent, top-1,
pooled over images). The picture is a small bar chart of the class probabilities with
the arg-max bar highlighted.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from dymu_rt.core.errors import DataError
from dymu_rt.tasks.base import Meter, Task, nan_if_empty, valid_mask, zero_loss
from dymu_rt.core.kinds import ClassificationOutput


class ClassificationTask(ClassificationOutput, Task):
    """Whole-image classification into ``num_classes`` classes."""

    primary_metric = "accuracy"
    metric_directions = {"accuracy": True}


    def _prepare(self, pred, target, mask):
        target = target.to(pred.device).long().reshape(-1)
        if pred.dim() != 2 or pred.shape[0] != target.shape[0]:
            raise DataError(f"task {self.name!r}: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                            f"are not [B, C] and [B]")
        valid = valid_mask(None if mask is None else mask.reshape(-1), tuple(target.shape), self, pred.device)
        if valid.any():
            lo, hi = int(target[valid].min()), int(target[valid].max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(f"task {self.name!r}: target class {lo if lo < 0 else hi} is out of range, "
                                f"expected 0..{self.num_classes - 1}")
        return target, valid

    def loss(self, pred, target, mask=None):
        """Cross-entropy averaged over valid images."""
        target, valid = self._prepare(pred, target, mask)
        n = int(valid.sum())
        if n == 0:
            return zero_loss(pred)
        return F.cross_entropy(pred[valid], target[valid], reduction="sum") / n

    def new_meter(self) -> "AccuracyMeter":
        return AccuracyMeter(self)


class AccuracyMeter(Meter):
    """Counts of correct and valid images."""

    def __init__(self, task: ClassificationTask) -> None:
        self.task = task
        self.correct = self.n = 0

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        target, valid = self.task._prepare(pred, target, mask)
        self.correct += int((pred.argmax(dim=1) == target)[valid].sum())
        self.n += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"accuracy": nan_if_empty(self.correct, self.n, 100.0)}
