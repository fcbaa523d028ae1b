"""Dense labelling: semantic segmentation (kind "segmentation") and human parts ("parts").

Both are per-pixel classification over ``num_classes`` labels with -1 = ignore, trained
with cross-entropy and measured on a dataset-wide confusion matrix:

* ``miou``: mean over classes of IoU_c = TP_c / (TP_c + FP_c + FN_c), averaged over the
  classes that occur in the ground truth or the prediction of the valid pixels seen
  (a class absent from both has an undefined IoU and is left out rather than counted
  as 0 or 1).
* ``pixel_acc``: correctly labelled valid pixels / valid pixels.

Both in percent. The picture is the label map in the PASCAL VOC palette.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dymu_rt.core.errors import DataError
from dymu_rt.tasks.base import Meter, Task, match_size, valid_mask, zero_loss
from dymu_rt.core.kinds import PartsOutput, SegmentationOutput

IGNORE_INDEX = -1


def _labels_and_valid(task: "SegmentationTask", pred: torch.Tensor, target: torch.Tensor,
                      mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred resized to the target, integer labels, validity) with ignore labels and mask merged."""
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if pred.dim() != 4 or target.dim() != 3 or pred.shape[0] != target.shape[0]:
        raise DataError(f"task {task.name!r}: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                        f"are not [B, C, H, W] and [B, H, W]")
    pred = match_size(pred, target.shape[-2:])
    target = target.to(pred.device).long()
    valid = valid_mask(mask, tuple(target.shape), task, pred.device) & (target != IGNORE_INDEX)
    if valid.any():
        lo, hi = int(target[valid].min()), int(target[valid].max())
        if lo < 0 or hi >= task.out_channels:
            bad = lo if lo < 0 else hi
            raise DataError(f"task {task.name!r}: target label {bad} is out of range, expected -1 (ignore) "
                            f"or 0..{task.out_channels - 1}")
    return pred, target, valid


class SegmentationTask(SegmentationOutput, Task):
    """Per-pixel classification into ``num_classes`` labels (-1 = ignore)."""

    primary_metric = "miou"
    metric_directions = {"miou": True, "pixel_acc": True}


    def loss(self, pred, target, mask=None):
        """Cross-entropy averaged over valid, non-ignored pixels."""
        pred, target, valid = _labels_and_valid(self, pred, target, mask)
        n = int(valid.sum())
        if n == 0:
            return zero_loss(pred)
        labels = torch.where(valid, target, torch.full_like(target, IGNORE_INDEX))
        return F.cross_entropy(pred, labels, ignore_index=IGNORE_INDEX, reduction="sum") / n

    def new_meter(self) -> "ConfusionMeter":
        return ConfusionMeter(self)


class PartsTask(PartsOutput, SegmentationTask):
    """Human-part segmentation (PASCAL-Context ``human_parts``): segmentation by another name."""


class ConfusionMeter(Meter):
    """A dataset-wide confusion matrix (rows = ground truth, columns = prediction)."""

    def __init__(self, task: SegmentationTask) -> None:
        self.task = task
        self.confusion = np.zeros((task.num_classes, task.num_classes), dtype=np.int64)

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        pred, target, valid = _labels_and_valid(self.task, pred, target, mask)
        c = self.task.num_classes
        idx = target[valid] * c + pred.argmax(dim=1)[valid]
        self.confusion += torch.bincount(idx, minlength=c * c).reshape(c, c).cpu().numpy()

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.confusion)


def confusion_metrics(confusion: np.ndarray) -> dict[str, float]:
    """mIoU (over classes present in GT or prediction) and pixel accuracy of a confusion matrix."""
    cm = confusion.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    total = cm.sum()
    present = union > 0
    miou = float(100.0 * (tp[present] / union[present]).mean()) if present.any() else float("nan")
    acc = float(100.0 * tp.sum() / total) if total > 0 else float("nan")
    return {"miou": miou, "pixel_acc": acc}
