"""Surface normals (kind "normals"): three unnormalized channels, cosine loss.

Predictions are L2-normalized before use; valid pixels are those of the mask whose
ground-truth normal is non-zero (the 0-vector marks a missing normal). Loss: 1 - cos
between prediction and ground truth. Metrics over every valid pixel of the dataset, as
in the surface-normal literature: ``mean`` and ``median`` angular error (degrees; mean
is the primary metric) and the % of pixels within 11.25°, 22.5° and 30°.

Streaming caveat: the median cannot be computed exactly without keeping every angle, so
the meter keeps a histogram with 0.01° bins and interpolates within the median's bin
(error well under 0.01°). The mean and the "within" percentages are exact.
"""

from __future__ import annotations

import numpy as np
import torch

from dymu_rt.tasks.base import Meter, Task, masked_mean, match_size, nan_if_empty, valid_mask
from dymu_rt.core.kinds import NormalsOutput
from dymu_rt.core.errors import DataError

WITHIN_DEGREES = (11.25, 22.5, 30.0)
HIST_BIN_DEGREES = 0.01


def within_key(deg: float) -> str:
    """Metric name of "% within ``deg`` degrees", e.g. ``within_11_25``."""
    return "within_" + f"{deg:g}".replace(".", "_")


class NormalsTask(NormalsOutput, Task):
    """Per-pixel unit surface normal (camera frame)."""

    primary_metric = "mean"
    metric_directions = {"mean": False, "median": False, **{within_key(d): True for d in WITHIN_DEGREES}}


    def _prepare(self, pred, target, mask):
        """(cos between unit prediction and target [B, H, W], validity [B, H, W])."""
        if target.dim() != 4 or target.shape[1] != 3:
            raise DataError(f"task {self.name!r}: target has shape {tuple(target.shape)}, expected [B, 3, H, W]")
        target = target.to(pred.device, pred.dtype)
        pred = match_size(pred, target.shape[-2:])
        b, _, h, w = target.shape
        # Channel sums by hand: torch's norm over the strided channel dim is ~30x slower on CPU.
        # Clamping before the sqrt keeps the gradient finite for an exactly-zero prediction.
        t_sq = (target * target).sum(dim=1)
        valid = valid_mask(mask, (b, h, w), self, pred.device) & (t_sq > 0) & torch.isfinite(t_sq)
        p_len = (pred * pred).sum(dim=1).clamp_min(1e-12).sqrt()
        cos = (pred * target).sum(dim=1) / (p_len * t_sq.clamp_min(1e-24).sqrt())
        return cos, valid

    def loss(self, pred, target, mask=None):
        """1 - cosine similarity, averaged over valid pixels."""
        cos, valid = self._prepare(pred, target, mask)
        return masked_mean(1.0 - cos, valid, pred)

    def new_meter(self) -> "NormalsMeter":
        return NormalsMeter(self)


class NormalsMeter(Meter):
    """Sum of angles, counts within thresholds and a 0.01° histogram for the median."""

    def __init__(self, task: NormalsTask) -> None:
        self.task = task
        self.n = 0
        self.sum_deg = 0.0
        self.within = np.zeros(len(WITHIN_DEGREES), dtype=np.int64)
        self.hist = np.zeros(int(round(180.0 / HIST_BIN_DEGREES)), dtype=np.int64)

    @torch.no_grad()
    def update(self, pred, target, mask=None) -> None:
        cos, valid = self.task._prepare(pred.double(), target, mask)
        deg = torch.rad2deg(torch.acos(cos[valid].clamp(-1.0, 1.0)))
        self.n += int(deg.numel())
        self.sum_deg += float(deg.sum())
        for i, t in enumerate(WITHIN_DEGREES):
            self.within[i] += int((deg < t).sum())
        bins = (deg / HIST_BIN_DEGREES).long().clamp_(0, len(self.hist) - 1)
        self.hist += torch.bincount(bins, minlength=len(self.hist)).cpu().numpy()

    def median(self) -> float:
        """Median angle (degrees), linearly interpolated inside its histogram bin."""
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.hist)
        half = self.n / 2.0
        k = int(np.searchsorted(cum, half))
        before = cum[k - 1] if k > 0 else 0
        frac = (half - before) / self.hist[k]
        return float((k + frac) * HIST_BIN_DEGREES)

    def compute(self) -> dict[str, float]:
        res = {"mean": nan_if_empty(self.sum_deg, self.n), "median": self.median()}
        for i, t in enumerate(WITHIN_DEGREES):
            res[within_key(t)] = nan_if_empty(self.within[i], self.n, 100.0)
        return res
