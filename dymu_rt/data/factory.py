"""``make_dataset``: the one call the trainer and evaluator use to get a split of data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from dymu_rt.core.errors import DataError, ValidationError
from dymu_rt.data.base import parse_size
from dymu_rt.data.cifar import Cifar100MultiTask, cifar_dir
from dymu_rt.data.nyuv2 import looks_like_nyuv2, NYUv2Dataset
from dymu_rt.data.pascal import looks_like_pascal, PascalContextDataset
from dymu_rt.data.synth import SynthDataset

# Default procedural split sizes: the CLI's --n 2000 with --val-fraction 0.2.
SYNTH_DEFAULT_N = {"train": 1600, "val": 400}


def detect_layout(root: str | os.PathLike) -> str:
    """"nyuv2", "pascal" or "cifar100" from a dataset folder's structure; DataError if none."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a folder; expected a NYU-v2 (MTAN), "
                        "PASCAL_MT or CIFAR-100 binary dataset folder")
    if looks_like_nyuv2(root):
        return "nyuv2"
    if looks_like_pascal(root):
        return "pascal"
    if cifar_dir(root) is not None:
        return "cifar100"
    raise DataError(f"{root} is not a known dataset layout; expected train/image/ (NYU-v2 MTAN), "
                    "JPEGImages/ + ImageSets/Context/ (PASCAL_MT) or train.bin/test.bin "
                    "(CIFAR-100 binary)")


def make_dataset(source: str | os.PathLike, split: str, size, tasks: Sequence[str],
                 augment: bool = False, n: Optional[int] = None, seed: int = 0):
    """The ``split`` ("train" or "val") of ``source`` as a Dataset in the sample contract.

    ``source`` is "synth" (procedural scenes rendered at ``size``; ``n`` scenes, default
    1600 train / 400 val; ``seed`` picks the scene stream) or a dataset folder whose layout
    is detected (NYU-v2 MTAN, PASCAL_MT, CIFAR-100 binary) and resized to ``size``;
    ``n`` then keeps the first n samples. ``augment`` turns on random scale/crop/flip.
    """
    size = parse_size(size)
    if split not in ("train", "val"):
        raise ValidationError(f"split '{split}' is not valid; expected train or val")
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 0):
        raise ValidationError(f"number of samples {n!r} is not valid; expected an integer >= 0")
    if str(source) == "synth":
        count = SYNTH_DEFAULT_N[split] if n is None else int(n)
        return SynthDataset(count, size, seed=seed, tasks=tasks, split=split, augment=augment)
    layout = detect_layout(source)
    if layout == "nyuv2":
        return NYUv2Dataset(source, split, tasks, size=size, augment=augment, n=n)
    if layout == "pascal":
        return PascalContextDataset(source, split, tasks, size=size, augment=augment, n=n)

    return Cifar100MultiTask(source, split, tasks, size=size, augment=augment, n=n)
