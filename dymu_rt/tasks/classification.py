"""Image classification (kind "classification"): ``num_classes`` logits per image.

Used by the CIFAR-100 benchmark (20 five-way tasks, one per superclass). Loss:
cross-entropy over the images whose mask is True. Metric: ``accuracy`` (percent, top-1,
pooled over images). The picture is a small bar chart of the class probabilities with
the arg-max bar highlighted.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from dymu_rt.errors import DataError, ValidationError
from dymu_rt.tasks.base import Meter, Task, nan_if_empty, valid_mask, zero_loss
from dymu_rt.tasks.render import font

BAR_COLOR = (90, 120, 170)
TOP_COLOR = (230, 120, 30)


class ClassificationTask(Task):
    """Whole-image classification into ``num_classes`` classes."""

    kind = "classification"
    primary_metric = "accuracy"
    metric_directions = {"accuracy": True}

    def __init__(self, name: str, num_classes: int, loss_weight: float = 1.0,
                 class_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(name, num_classes, loss_weight)
        self.num_classes = int(num_classes)
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValidationError(f"task {name!r}: {len(class_names)} class names given, expected {self.num_classes}")
        self.class_names = tuple(class_names) if class_names is not None else None

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

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw logits [C] -> class probabilities [C] (softmax, float32); ``.argmax()`` is the class."""
        z = self._check_out(out, 1).astype(np.float64)
        e = np.exp(z - z.max())
        return (e / e.sum()).astype(np.float32)

    def visualize(self, post: np.ndarray, size: tuple[int, int] = (160, 120)) -> Image.Image:
        """Probabilities [C] -> bar chart of ``size`` = (width, height), arg-max bar in orange."""
        p = np.clip(np.nan_to_num(np.asarray(post, dtype=np.float64).reshape(-1)), 0.0, 1.0)
        w, h = size
        img = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        f = font(10)
        label_h, top_h, pad = 12, 12, 4
        plot_h = max(1, h - label_h - top_h - pad)
        slot = (w - 2 * pad) / max(1, len(p))
        top = int(p.argmax()) if len(p) else -1
        for i, v in enumerate(p):
            x0, x1 = pad + i * slot + 0.15 * slot, pad + (i + 1) * slot - 0.15 * slot
            y1 = top_h + plot_h
            draw.rectangle([x0, y1 - v * plot_h, x1, y1], fill=TOP_COLOR if i == top else BAR_COLOR)
            name = self.class_names[i] if self.class_names else str(i)
            draw.text(((x0 + x1) / 2, y1 + 1), name[: max(1, int(slot // 6))], fill=(0, 0, 0), font=f, anchor="ma")
        draw.line([pad, top_h + plot_h, w - pad, top_h + plot_h], fill=(0, 0, 0))
        if top >= 0:
            name = self.class_names[top] if self.class_names else f"class {top}"
            draw.text((pad, 1), f"{name}: {p[top]:.2f}", fill=(0, 0, 0), font=f)
        return img


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
