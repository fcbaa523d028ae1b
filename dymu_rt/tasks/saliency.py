"""Saliency (kind "saliency"): one logit channel, binary cross-entropy.

The target is a saliency map in [0, 1] (soft values are allowed by the loss); metrics
binarize it at 0.5 (salient = target >= 0.5). Predictions are sigmoid(logit).

* ``miou``: mean of the background and foreground IoU of the prediction binarized at
  0.5, on a dataset-wide 2x2 confusion matrix (the segmentation definition).
* ``max_f``: the salient-object-detection maxF (Achanta et al. 2009 and the benchmarks
  after it): at each of 256 thresholds t = k/255 a pixel is predicted salient when
  p >= t; precision and recall are computed per image (valid pixels only, 0 for an empty
  denominator), averaged over images, combined as
  F_beta = (1 + beta^2) P R / (beta^2 P + R) with beta^2 = 0.3, and maximised over t.
  Per-image averaging is the literature's convention; it differs from pooling pixels
  over the dataset when images differ in size or salient area.

Both in percent. The picture is the saliency probability in grey (white = salient).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dymu_rt.tasks.base import Meter, Task, batch_hw, masked_mean, match_size, valid_mask
from dymu_rt.core.kinds import SaliencyOutput

BETA_SQ = 0.3
N_THRESHOLDS = 256
THRESHOLDS = np.arange(N_THRESHOLDS, dtype=np.float64) / (N_THRESHOLDS - 1)


def binary_prepare(task: Task, pred: torch.Tensor, target: torch.Tensor, mask):
    """(logits [B, H, W] at the target size, target [B, H, W] float, validity [B, H, W])."""
    target = batch_hw(target, task).to(pred.device, torch.float32)
    pred = match_size(pred, target.shape[-2:])[:, 0]
    valid = valid_mask(mask, tuple(target.shape), task, pred.device) & torch.isfinite(target)
    return pred, target, valid


def binary_iou(confusion: np.ndarray) -> float:
    """Mean IoU of background and foreground from a 2x2 confusion matrix (rows = truth)."""
    cm = confusion.astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    return float(100.0 * (tp[present] / union[present]).mean()) if present.any() else float("nan")


class SaliencyTask(SaliencyOutput, Task):
    """Per-pixel salient-object probability (one logit)."""

    primary_metric = "max_f"
    metric_directions = {"max_f": True, "miou": True}


    def loss(self, pred, target, mask=None):
        """Binary cross-entropy with logits, averaged over valid pixels."""
        logits, target, valid = binary_prepare(self, pred, target, mask)
        bce = F.binary_cross_entropy_with_logits(logits, target.clamp(0.0, 1.0), reduction="none")
        return masked_mean(bce, valid, pred)

    def new_meter(self) -> "SaliencyMeter":
        return SaliencyMeter(self)


class SaliencyMeter(Meter):
    """A 2x2 confusion matrix at 0.5 and per-threshold sums of per-image precision/recall."""

    def __init__(self, task: SaliencyTask) -> None:
        self.task = task
        self.confusion = np.zeros((2, 2), dtype=np.int64)
        self.sum_precision = np.zeros(N_THRESHOLDS)
        self.sum_recall = np.zeros(N_THRESHOLDS)
        self.images = 0

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        logits, target, valid = binary_prepare(self.task, pred, target, mask)
        prob = torch.sigmoid(logits.double())
        gt = target >= 0.5
        idx = gt[valid].long() * 2 + (prob[valid] >= 0.5).long()
        self.confusion += torch.bincount(idx, minlength=4).reshape(2, 2).cpu().numpy()
        # Bin k holds p in [k/255, (k+1)/255): the pixels predicted salient at t_k are
        # those of bins >= k, so reversed cumulative sums give every threshold at once.
        bins = (prob * (N_THRESHOLDS - 1)).floor().long().clamp_(0, N_THRESHOLDS - 1)
        for b in range(prob.shape[0]):
            v = valid[b]
            if not v.any():
                continue
            kb, gb = bins[b][v], gt[b][v]
            pos = torch.bincount(kb, minlength=N_THRESHOLDS).cpu().numpy()
            tp = torch.bincount(kb[gb], minlength=N_THRESHOLDS).cpu().numpy()
            pos_at, tp_at = np.cumsum(pos[::-1])[::-1], np.cumsum(tp[::-1])[::-1]
            n_gt = int(gb.sum())
            self.sum_precision += np.divide(tp_at, pos_at, out=np.zeros(N_THRESHOLDS), where=pos_at > 0)
            self.sum_recall += tp_at / n_gt if n_gt > 0 else 0.0
            self.images += 1

    def compute(self) -> dict[str, float]:
        if self.images == 0:
            return {"max_f": float("nan"), "miou": binary_iou(self.confusion)}
        p, r = self.sum_precision / self.images, self.sum_recall / self.images
        den = BETA_SQ * p + r
        f = np.divide((1.0 + BETA_SQ) * p * r, den, out=np.zeros_like(den), where=den > 0)
        return {"max_f": float(100.0 * f.max()), "miou": binary_iou(self.confusion)}
