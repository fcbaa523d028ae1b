"""Monocular depth (kind "depth"): one channel in metres, masked L1.

Valid pixels are those of the mask whose ground truth is finite and > 0 (0 marks a
missing depth reading in NYU-v2 and in the data contract). Metrics, accumulated as sums
over every valid pixel of the dataset (not per image):

* ``abs_err``: mean |d - d*| (m); ``rel_err``: mean |d - d*| / d*;
* ``rmse``: sqrt(mean (d - d*)^2) (m) -- the primary metric, as in the MTL literature
  on NYU-v2;
* ``delta1``: % of pixels with max(d/d*, d*/d) < 1.25; a prediction <= 0 never counts.

Pictures use a perceptual matplotlib colormap (viridis by default: near = dark,
far = bright) over either a fixed depth range (``value_range=(near, far)``: colors mean
the same depth in every picture, the right choice to compare images or models) or, when
no range is given, each image's own valid min..max (best contrast, not comparable across
images). Invalid (0) depth is black.
"""

from __future__ import annotations


import numpy as np
import torch

from dymu_rt.tasks.base import Meter, Task, batch_hw, masked_mean, match_size, nan_if_empty, valid_mask
from dymu_rt.core.kinds import DepthOutput

DELTA_THRESHOLD = 1.25


class DepthTask(DepthOutput, Task):
    """Per-pixel depth regression in metres."""

    primary_metric = "rmse"
    metric_directions = {"abs_err": False, "rel_err": False, "rmse": False, "delta1": True}


    def _prepare(self, pred, target, mask):
        target = batch_hw(target, self).to(pred.device, torch.float32)
        pred = match_size(pred, target.shape[-2:])[:, 0]
        valid = valid_mask(mask, tuple(target.shape), self, pred.device)
        valid = valid & torch.isfinite(target) & (target > 0)
        return pred, target, valid

    def loss(self, pred, target, mask=None):
        """L1 between predicted and true depth, averaged over valid pixels."""
        pred, target, valid = self._prepare(pred, target, mask)
        return masked_mean((pred - target).abs(), valid, pred)

    def new_meter(self) -> "DepthMeter":
        return DepthMeter(self)


class DepthMeter(Meter):
    """Sums of |e|, |e|/d*, e^2 and δ-hits over all valid pixels."""

    def __init__(self, task: DepthTask) -> None:
        self.task = task
        self.n = 0
        self.sum_abs = self.sum_rel = self.sum_sq = 0.0
        self.hits = 0

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        pred, target, valid = self.task._prepare(pred, target, mask)
        p, t = pred[valid].double(), target[valid].double()
        err = p - t
        ratio = torch.maximum(p.clamp_min(1e-12) / t, t / p.clamp_min(1e-12))
        self.n += int(p.numel())
        self.sum_abs += float(err.abs().sum())
        self.sum_rel += float((err.abs() / t).sum())
        self.sum_sq += float((err * err).sum())
        self.hits += int((ratio < DELTA_THRESHOLD).sum())

    def compute(self) -> dict[str, float]:
        mse = nan_if_empty(self.sum_sq, self.n)
        return {"abs_err": nan_if_empty(self.sum_abs, self.n),
                "rel_err": nan_if_empty(self.sum_rel, self.n),
                "rmse": float(np.sqrt(mse)),
                "delta1": nan_if_empty(self.hits, self.n, 100.0)}
