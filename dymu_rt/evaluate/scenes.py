"""Labelled procedural scenes for checking a deployed model's outputs, and their scores.

``dymu-rt check`` (each backend against the FP32 reference) and ``dymu-rt demo`` (the
accuracy of each preference it runs) score raw network outputs on the same labelled
validation scenes with the training meters, so a number means the same in both.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.data.synth import SynthDataset

#: the metric reported per task kind where it is not the task's primary one (the papers'
#: NYU-v2 columns: mIoU, mean angle error, absolute depth error)
REPORTED_METRIC = {"segmentation": "miou", "parts": "miou", "depth": "abs_err", "normals": "mean"}

#: how a person reads each metric (name and unit)
METRIC_LABEL = {"miou": "mIoU %", "pixel_acc": "pixel accuracy %", "mean": "mean angle error (deg)",
                "abs_err": "abs. depth error (m)", "rmse": "RMSE (m)", "accuracy": "accuracy %",
                "f_measure": "F-measure", "max_f": "max F-measure"}


def labelled_scenes(input_size: Sequence[int], task_names: Sequence[str], preprocessing: Mapping,
                    n: int, seed: int):
    """Preprocessed images [n, 3, H, W] (float32, what a bundle's graphs take) and per-task
    labels (targets, masks) as torch tensors, of ``n`` validation scenes rendered at ``input_size``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"--scenes {n!r}: expected a number of labelled scenes >= 1")
    ds = SynthDataset(n, size=tuple(input_size), seed=seed, split="val", tasks=tuple(task_names))
    samples = [ds[i] for i in range(n)]
    images = np.stack([s["image"].numpy() for s in samples]).astype(np.float32)
    if not preprocessing.get("normalize_in_graph", True):
        mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
        images = (images - mean) / std
    targets = {t: torch.stack([s["targets"][t] for s in samples]) for t in task_names}
    masks = {t: torch.stack([s["masks"][t] for s in samples]) for t in task_names}
    return images, targets, masks


def reported_metric(task) -> str:
    """The metric shown for ``task`` (a :class:`dymu_rt.tasks.base.Task`)."""
    return REPORTED_METRIC.get(task.kind, task.primary_metric)


def score(tasks, outputs: Mapping[str, np.ndarray], targets, masks,
          metric: Optional[Mapping[str, str]] = None) -> dict[str, float]:
    """Task name -> its reported metric (or ``metric[kind]``) of raw ``outputs`` [n, C, h, w]."""
    res = {}
    for t in tasks:
        meter = t.new_meter()
        meter.update(torch.from_numpy(np.asarray(outputs[t.name])), targets[t.name], masks[t.name])
        key = (metric or {}).get(t.kind) or reported_metric(t)
        res[t.name] = float(meter.compute()[key])
    return res
