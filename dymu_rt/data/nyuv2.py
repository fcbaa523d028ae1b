"""NYU-v2 in the MTAN layout (Liu et al., "End-to-End Multi-Task Learning with Attention").

On disk (as MTAN's ``create_dataset.py`` reads it)::

    root/{train,val}/image/{i}.npy    float H x W x 3, values in [0, 1] (or [0, 255])
    root/{train,val}/label/{i}.npy    H x W, 13 classes 0..12, -1 = ignore
    root/{train,val}/depth/{i}.npy    H x W x 1 (or H x W), metres, 0 = invalid
    root/{train,val}/normal/{i}.npy   H x W x 3, zero vector = invalid

with i = 0..N-1 (MTAN counts the files and loads ``{index}.npy``), 288 x 384 for the
real data. Image range is detected per file: uint8, or any value above 1, means
[0, 255]. Normals are renormalized to unit length where valid.
``dymu-rt data synth --layout nyuv2`` writes this layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dymu_rt.data.base import DenseDataset, Sample, check_tasks, dense_sample
from dymu_rt.core.labels import NYU_TASKS, NYU13_CLASSES
from dymu_rt.data.files import expect_shape, load_npy, require_dir
from dymu_rt.core.errors import DataError, ValidationError

TASK_FOLDERS = {"semseg": "label", "depth": "depth", "normals": "normal"}


def looks_like_nyuv2(root: Path) -> bool:
    """True when ``root`` has the MTAN folder structure."""
    return any((root / s / "image").is_dir() for s in ("train", "val"))


def _indexed_npy(folder: Path) -> int:
    """Number of files 0.npy..N-1.npy in ``folder``; DataError if the names have gaps."""
    names = [p.name for p in folder.iterdir() if p.suffix == ".npy" and not p.name.startswith(".")]
    n = len(names)
    expected = {f"{i}.npy" for i in range(n)}
    stray = sorted(set(names) - expected)
    if stray:
        missing = sorted(expected - set(names), key=lambda s: int(s[:-4]))
        hint = f" (missing {folder / missing[0]})" if missing else ""
        raise DataError(f"{folder} holds {n} .npy files but not 0.npy..{n - 1}.npy: unexpected "
                        f"'{stray[0]}'{hint}")
    return n


class NYUv2Dataset(DenseDataset):
    """NYU-v2 (MTAN layout): tasks ``semseg`` (13 classes), ``normals``, ``depth``."""

    source = "NYU-v2"
    classes = NYU13_CLASSES

    def __init__(self, root, split: str = "train", tasks: Sequence[str] = NYU_TASKS,
                 size=None, augment=False, n: Optional[int] = None):
        tasks = check_tasks(tasks, NYU_TASKS, "NYU-v2")
        super().__init__(tasks, size, augment)
        if split not in ("train", "val"):
            raise ValidationError(f"split '{split}' is not valid for NYU-v2; expected train or val")
        self.root = Path(root)
        self.dir = require_dir(self.root / split, f"NYU-v2 {split}")
        count = _indexed_npy(require_dir(self.dir / "image", "NYU-v2 image"))
        for task in self.tasks:
            folder = require_dir(self.dir / TASK_FOLDERS[task], f"NYU-v2 {task}")
            other = _indexed_npy(folder)
            if other != count:
                raise DataError(f"count mismatch: {self.dir / 'image'} has {count} files but "
                                f"{folder} has {other}; expected one {TASK_FOLDERS[task]} per image")
        if count == 0:
            raise DataError(f"{self.dir / 'image'} holds no .npy files; expected 0.npy, 1.npy, ...")
        if n is not None:
            if n < 0:
                raise ValidationError(f"number of samples {n} is not valid; expected >= 0")
            count = min(count, int(n))
        self._len = count

    def __len__(self) -> int:
        return self._len

    def load(self, index: int) -> Sample:
        path = self.dir / "image" / f"{index}.npy"
        raw = load_npy(path)
        expect_shape(raw, [(None, None, 3)], path, "an RGB image")
        image = raw.astype(np.float32)
        if not np.isfinite(image).all() or image.min() < 0:
            raise DataError(f"{path} has negative or non-finite values; expected [0, 1] or [0, 255]")
        if raw.dtype == np.uint8 or image.max() > 1.0 + 1e-3:
            image = image / 255.0
        if image.max() > 1.0 + 1e-3:
            raise DataError(f"{path} has values up to {image.max() * 255:.1f}; expected [0, 255]")
        hw = image.shape[:2]
        targets, masks = {}, {}
        if "semseg" in self.tasks:
            p = self.dir / "label" / f"{index}.npy"
            label = load_npy(p)
            expect_shape(label, [hw], p, "a label map")
            if not np.isfinite(label).all() or (label != np.round(label)).any():
                raise DataError(f"{p} has non-integer labels; expected class ids 0..12 or -1")
            label = label.astype(np.int64)
            bad = (label < -1) | (label > 12)
            if bad.any():
                raise DataError(f"{p} has label {int(label[bad][0])}; expected 0..12 or -1 (ignore)")
            targets["semseg"], masks["semseg"] = label, label >= 0
        if "depth" in self.tasks:
            p = self.dir / "depth" / f"{index}.npy"
            depth = load_npy(p)
            expect_shape(depth, [hw, (*hw, 1)], p, "a depth map")
            depth = depth.reshape(hw).astype(np.float32)
            valid = np.isfinite(depth) & (depth > 0)
            targets["depth"], masks["depth"] = np.where(valid, depth, 0.0), valid
        if "normals" in self.tasks:
            p = self.dir / "normal" / f"{index}.npy"
            normal = load_npy(p)
            expect_shape(normal, [(*hw, 3)], p, "a normal map")
            normal = normal.astype(np.float32)
            norm = np.linalg.norm(normal, axis=-1)
            valid = np.isfinite(norm) & (norm > 1e-6)
            # Renormalize only vectors that are not unit already, so stored unit normals
            # read back bit-exact.
            scale = np.where(valid & (np.abs(norm - 1.0) > 1e-4), norm, 1.0)
            unit = np.where(valid[..., None], normal / scale[..., None], 0.0).astype(np.float32)
            targets["normals"], masks["normals"] = unit, valid
        return dense_sample(image, targets, masks)
