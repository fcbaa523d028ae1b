"""CIFAR-100 as 20 five-way classification tasks, from the official *binary* version.

``train.bin`` / ``test.bin`` (in ``root`` or ``root/cifar-100-binary``, as the official
tarball unpacks): records of 3074 bytes = 1 coarse label byte, 1 fine label byte, then
3072 pixel bytes: the 32x32 red plane, then green, then blue, row-major. No pickle.

Task t is superclass t (named as in :data:`CIFAR100_SUPERCLASSES`); its 5 classes are
the fine ids of that superclass in increasing order (fine id -> 0..4 by
:func:`~dymu_rt.core.labels.cifar100_local_labels`). An image has a True mask only for
its own superclass task; the other tasks' targets are 0 and masked out. Only images of
the requested superclasses are kept. Split "val" reads ``test.bin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from dymu_rt.core.errors import DataError, ValidationError
from dymu_rt.core.labels import CIFAR100_FINE_TO_COARSE, CIFAR100_SUPERCLASSES, cifar100_local_labels
from dymu_rt.data.base import Sample, check_tasks, parse_size
from dymu_rt.data.transforms import DenseAugment, resize_sample

RECORD = 2 + 3 * 32 * 32
SPLIT_FILES = {"train": "train.bin", "val": "test.bin", "test": "test.bin"}


def cifar_dir(root: Path) -> Optional[Path]:
    """The folder holding train.bin/test.bin (root or root/cifar-100-binary), if any."""
    for d in (root, root / "cifar-100-binary"):
        if (d / "train.bin").is_file() or (d / "test.bin").is_file():
            return d
    return None


def read_records(path: Path) -> np.ndarray:
    """All records of a CIFAR-100 .bin file as uint8 [N, 3074], validated."""
    if not path.is_file():
        raise DataError(f"CIFAR-100 file not found: {path}")
    size = path.stat().st_size
    if size == 0 or size % RECORD:
        raise DataError(f"{path} is {size} bytes, not a positive multiple of {RECORD} "
                        "(1 coarse + 1 fine label byte + 3072 pixel bytes per image); truncated?")
    rec = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, RECORD)
    coarse, fine = rec[:, 0].astype(np.int64), rec[:, 1].astype(np.int64)
    bad = np.flatnonzero((coarse >= 20) | (fine >= 100))
    if len(bad):
        i = bad[0]
        raise DataError(f"{path} record {i} has coarse label {coarse[i]} and fine label {fine[i]}; "
                        "expected coarse 0..19 and fine 0..99")
    bad = np.flatnonzero(CIFAR100_FINE_TO_COARSE[fine] != coarse)
    if len(bad):
        i = bad[0]
        raise DataError(f"{path} record {i}: fine label {fine[i]} belongs to superclass "
                        f"{CIFAR100_FINE_TO_COARSE[fine[i]]}, not {coarse[i]}; not CIFAR-100 binary?")
    return rec


class Cifar100MultiTask(torch.utils.data.Dataset):
    """CIFAR-100 superclasses as tasks (5-way classification each)."""

    source = "CIFAR-100"

    def __init__(self, root, split: str = "train", tasks: Optional[Sequence[str]] = None,
                 size=None, augment=False, n: Optional[int] = None):
        if split not in SPLIT_FILES:
            raise ValidationError(f"split '{split}' is not valid for CIFAR-100; expected train or val")
        self.tasks = check_tasks(tasks if tasks is not None else CIFAR100_SUPERCLASSES,
                                 CIFAR100_SUPERCLASSES, "CIFAR-100")
        root = Path(root)
        folder = cifar_dir(root) or root
        rec = read_records(folder / SPLIT_FILES[split])
        task_ids = np.array([CIFAR100_SUPERCLASSES.index(t) for t in self.tasks])
        keep = np.flatnonzero(np.isin(rec[:, 0], task_ids))
        if n is not None:
            if n < 0:
                raise ValidationError(f"number of samples {n} is not valid; expected >= 0")
            keep = keep[: int(n)]
        self._rec, self._keep = rec, keep
        self._local = cifar100_local_labels()
        self.size = None if size is None else parse_size(size)
        if augment is True:
            augment = DenseAugment(flip=True, scale=None, pad=4)
        self.augment = augment or None

    def __len__(self) -> int:
        return len(self._keep)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for CIFAR-100 of {len(self)} samples")
        r = np.asarray(self._rec[self._keep[index]])
        coarse, fine = int(r[0]), int(r[1])
        image = torch.from_numpy(r[2:].reshape(3, 32, 32).astype(np.float32) / 255.0)
        own = CIFAR100_SUPERCLASSES[coarse]
        targets = {t: torch.tensor(int(self._local[fine]) if t == own else 0) for t in self.tasks}
        masks = {t: torch.tensor(t == own) for t in self.tasks}
        sample = {"image": image, "targets": targets, "masks": masks}
        if self.size is not None and self.size != (32, 32):
            sample = resize_sample(sample, self.size)
        if self.augment is not None:
            sample = self.augment(sample)
        return sample
