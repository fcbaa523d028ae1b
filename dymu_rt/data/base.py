"""The sample contract shared by every dataset, and the base class of the dense loaders.

A sample is ``{"image": FloatTensor[3, H, W] in [0, 1], "targets": {task: tensor},
"masks": {task: BoolTensor}}`` (docs/INTERFACES.md). Loaders produce numpy arrays in
their natural (H, W[, C]) layout; :func:`dense_sample` turns them into the contract,
and :class:`DenseDataset` adds resizing to a fixed input size and augmentation.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.core.kinds import LABEL_MAP_KINDS
from dymu_rt.core.labels import DENSE_TASK_KINDS
from dymu_rt.data.transforms import DenseAugment, resize_sample

Sample = dict


def parse_size(size, what: str = "size") -> tuple[int, int]:
    """(H, W) from an int, a pair, or a string "128" / "96x128"; ValidationError otherwise."""
    if isinstance(size, str):
        text = size.strip().lower()
        parts = text.split("x")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise ValidationError(f"{what} '{size}' is not valid; expected N or HxW, e.g. 128 "
                                  "or 96x128") from None
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise ValidationError(f"{what} '{size}' is not valid; expected N or HxW, e.g. 96x128")
        size = tuple(vals)
    elif isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} {size!r} is not valid; expected (H, W)") from None
    if not (8 <= h <= 4096 and 8 <= w <= 4096):
        raise ValidationError(f"{what} {h}x{w} is out of range; expected 8..4096 pixels per side")
    return h, w


def check_tasks(tasks: Sequence[str], available: Sequence[str], source: str) -> tuple[str, ...]:
    """Validate requested task names against those a dataset provides."""
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    if not tasks:
        raise ValidationError(f"no tasks requested from {source}; expected some of "
                              f"{', '.join(available)}")
    bad = [t for t in tasks if t not in available]
    if bad:
        raise ValidationError(f"task '{bad[0]}' is not provided by {source}; expected some of "
                              f"{', '.join(available)}")
    if len(set(tasks)) != len(tasks):
        raise ValidationError(f"tasks {list(tasks)} contain duplicates")
    return tasks


def dense_sample(image: np.ndarray, targets: dict[str, np.ndarray],
                 masks: dict[str, np.ndarray]) -> Sample:
    """Contract sample from numpy arrays in (H, W[, C]) layout.

    ``image`` float (H, W, 3) in [0, 1]; segmentation/parts int (H, W) with -1 = ignore;
    depth/saliency/edges float (H, W); normals float (H, W, 3); masks bool (H, W).
    """
    out_t, out_m = {}, {}
    for name, t in targets.items():
        kind = DENSE_TASK_KINDS[name]
        if kind in LABEL_MAP_KINDS:
            out_t[name] = torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))
        elif kind == "normals":
            out_t[name] = torch.from_numpy(np.ascontiguousarray(
                np.moveaxis(np.asarray(t, dtype=np.float32), -1, 0)))
        else:
            out_t[name] = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))[None]
        out_m[name] = torch.from_numpy(np.ascontiguousarray(masks[name], dtype=bool))
    img = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(image, np.float32), -1, 0)))
    return {"image": img, "targets": out_t, "masks": out_m}


class DenseDataset(torch.utils.data.Dataset):
    """Base of the dense multi-task loaders: resize to ``size`` and optional augmentation.

    Subclasses implement ``__len__`` and ``load(index) -> Sample`` (at native size).
    """

    source = "dataset"

    def __init__(self, tasks: Sequence[str], size: Optional[tuple[int, int]] = None,
                 augment: bool | Callable[[Sample], Sample] = False):
        self.tasks = tuple(tasks)
        self.size = None if size is None else parse_size(size)
        if augment is True:
            augment = DenseAugment()
        self.augment = augment or None

    def load(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.source} of {n} samples")
        return index % n

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(self._check_index(int(index)))
        if self.size is not None and tuple(sample["image"].shape[-2:]) != self.size:
            sample = resize_sample(sample, self.size)
        if self.augment is not None:
            sample = self.augment(sample)
        return sample
