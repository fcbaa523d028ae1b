"""Edge detection (kind "edges"): one logit channel, class-balanced BCE.

Loss (HED, Xie & Tu 2015; the MTL literature's balanced BCE): over valid pixels with
edge labels y in {0, 1}, positives are weighted by beta and negatives by 1 - beta, where
beta = (non-edge valid pixels) / (valid pixels) of the batch, so the rare edge pixels
weigh as much in total as the background. The weighted BCE is averaged over valid
pixels. ``pos_weight`` fixes beta instead (ASTMT / MTI-Net use 0.95 on PASCAL).

Metrics at one fixed threshold (``threshold``, default 0.5 on sigmoid(logit)), pooled
over every valid pixel of the dataset (not per image):

* ``precision``: predicted edge pixels with a true edge within ``tolerance`` pixels
  (Chebyshev distance; square dilation) / predicted edge pixels (0 when none);
* ``recall``: true edge pixels with a predicted edge within ``tolerance`` / true edge
  pixels (NaN when the data has none);
* ``f_measure`` (primary): 2 P R / (P + R).

The default ``tolerance=0`` is exact pixel matching. This is NOT the BSDS ODS/OIS
protocol (thinned predictions, one-to-one matching within 0.0075 x diagonal, best
threshold over the dataset); it is cheaper, streaming, and stricter, so its numbers are
lower than published ODS-F and comparable only with each other. All in percent.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from dymu_rt.tasks.base import Meter, Task, zero_loss
from dymu_rt.core.kinds import EdgesOutput
from dymu_rt.tasks.saliency import binary_prepare


def dilate(edges: torch.Tensor, radius: int) -> torch.Tensor:
    """Bool [B, H, W] grown by ``radius`` pixels in every direction (a (2r+1)^2 square)."""
    if radius <= 0:
        return edges
    x = edges[:, None].float()
    return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


class EdgesTask(EdgesOutput, Task):
    """Per-pixel edge probability (one logit)."""

    primary_metric = "f_measure"
    metric_directions = {"f_measure": True, "precision": True, "recall": True}


    def loss(self, pred, target, mask=None):
        """Class-balanced BCE with logits averaged over valid pixels."""
        logits, target, valid = binary_prepare(self, pred, target, mask)
        n = int(valid.sum())
        if n == 0:
            return zero_loss(pred)
        y = target[valid].clamp(0.0, 1.0)
        beta = float((1.0 - y).sum()) / n if self.pos_weight is None else self.pos_weight
        weight = beta * y + (1.0 - beta) * (1.0 - y)
        return F.binary_cross_entropy_with_logits(logits[valid], y, weight=weight, reduction="sum") / n

    def new_meter(self) -> "EdgeMeter":
        return EdgeMeter(self)


class EdgeMeter(Meter):
    """Pooled counts of predicted / true / matched edge pixels at the task's threshold."""

    def __init__(self, task: EdgesTask) -> None:
        self.task = task
        self.pixels = self.n_pred = self.n_true = self.pred_matched = self.true_matched = 0

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        logits, target, valid = binary_prepare(self.task, pred, target, mask)
        pred_e = (torch.sigmoid(logits.double()) >= self.task.threshold) & valid
        true_e = (target >= 0.5) & valid
        r = self.task.tolerance
        self.pixels += int(valid.sum())
        self.n_pred += int(pred_e.sum())
        self.n_true += int(true_e.sum())
        self.pred_matched += int((pred_e & dilate(true_e, r)).sum())
        self.true_matched += int((true_e & dilate(pred_e, r)).sum())

    def compute(self) -> dict[str, float]:
        if self.pixels == 0:
            return {"f_measure": float("nan"), "precision": float("nan"), "recall": float("nan")}
        p = self.pred_matched / self.n_pred if self.n_pred else 0.0
        r = self.true_matched / self.n_true if self.n_true else float("nan")
        f = 2.0 * p * r / (p + r) if p + r > 0 else (float("nan") if np.isnan(r) else 0.0)
        return {"f_measure": 100.0 * f, "precision": 100.0 * p, "recall": 100.0 * r}
