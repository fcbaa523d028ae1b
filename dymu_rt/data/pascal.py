"""PASCAL-Context multi-task in the PASCAL_MT layout (ASTMT, Maninis et al. 2019; used by
Vandenhende et al.'s Multi-Task-Learning-PyTorch).

On disk, for every id listed in ``ImageSets/Context/{split}.txt``::

    JPEGImages/{id}.jpg                 RGB image
    semseg/pascal-context/{id}.png      21 classes (0 = background), 255 = ignore
                                        (semseg/VOC12/{id}.png is preferred when present,
                                        as the reference loader does)
    human_parts/{id}.mat                PASCAL-Part annotation: anno[0][0][1][0] = objects,
                                        object = (class, class_ind, mask, parts),
                                        part = (part_name, mask); person = class_ind 15
    sal_distill/{id}.png                saliency, gray, binarized at 0.5
    normals_distill/{id}.png            RGB, n = 2 * v / 255 - 1
    pascal-context/trainval/{id}.mat    optional: ``LabelMap`` (full PASCAL-Context labels),
                                        the source of the edge maps when present

Conventions, following the reference loader:

* human parts use the 6-part grouping (7 classes with background); an image with no
  annotated person is ignored entirely for that task (ASTMT's AddIgnoreRegions);
* edges are the 1-px boundaries of ``LabelMap`` (or, without it, of the semseg map),
  see :mod:`dymu_rt.data.edges`;
* normals are valid where the decoded vector is close to unit length (|n| in 0.75..1.25)
  and are renormalized. Not done: the reference also invalidates normals on classes
  without an NYU counterpart, which needs its class-list JSON files.

``dymu-rt data synth --layout pascal`` writes this layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dymu_rt.data.base import DenseDataset, Sample, check_tasks, dense_sample
from dymu_rt.core.labels import (HUMAN_PART_GROUPS_6, PASCAL_CLASSES, PASCAL_PERSON_CLASS_IND,
                                  PASCAL_TASKS)
from dymu_rt.data.edges import label_edges
from dymu_rt.data.files import expect_shape, load_image, load_mat
from dymu_rt.core.errors import DataError, ValidationError


def looks_like_pascal(root: Path) -> bool:
    """True when ``root`` has the PASCAL_MT folder structure."""
    return (root / "JPEGImages").is_dir() and (root / "ImageSets" / "Context").is_dir()


class PascalContextDataset(DenseDataset):
    """PASCAL-Context (PASCAL_MT layout): ``semseg`` (21), ``human_parts`` (7), ``saliency``,
    ``normals``, ``edges``."""

    source = "PASCAL-Context"
    classes = PASCAL_CLASSES

    def __init__(self, root, split: str = "train", tasks: Sequence[str] = PASCAL_TASKS,
                 size=None, augment=False, n: Optional[int] = None):
        tasks = check_tasks(tasks, PASCAL_TASKS, "PASCAL-Context")
        super().__init__(tasks, size, augment)
        self.root = Path(root)
        split_file = self.root / "ImageSets" / "Context" / f"{split}.txt"
        if not split_file.is_file():
            raise DataError(f"PASCAL-Context split list not found: {split_file}")
        try:
            ids = [ln.strip() for ln in split_file.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise DataError(f"{split_file} is not a text file; expected one image id per line") from None
        ids = [i for i in ids if i]
        if not ids:
            raise DataError(f"{split_file} lists no images; expected one image id per line")
        if n is not None:
            if n < 0:
                raise ValidationError(f"number of samples {n} is not valid; expected >= 0")
            ids = ids[: int(n)]
        self.ids = ids
        self.label_map_dir = self.root / "pascal-context" / "trainval"
        self.edges_from_label_map = self.label_map_dir.is_dir()
        self._check_files(split_file)

    def _paths(self, id_: str) -> dict[str, Path]:
        r = self.root
        voc = r / "semseg" / "VOC12" / f"{id_}.png"
        paths = {
            "image": r / "JPEGImages" / f"{id_}.jpg",
            "semseg": voc if voc.is_file() else r / "semseg" / "pascal-context" / f"{id_}.png",
            "human_parts": r / "human_parts" / f"{id_}.mat",
            "saliency": r / "sal_distill" / f"{id_}.png",
            "normals": r / "normals_distill" / f"{id_}.png",
        }
        paths["edges"] = (self.label_map_dir / f"{id_}.mat" if self.edges_from_label_map
                          else paths["semseg"])
        return paths

    def _check_files(self, split_file: Path) -> None:
        """Every listed id must have its image and one file per requested task."""
        needed = ("image",) + self.tasks
        for key in needed:
            missing = [p for p in (self._paths(i)[key] for i in self.ids) if not p.is_file()]
            if missing:
                what = "image" if key == "image" else f"{key} file"
                raise DataError(f"{len(missing)} of {len(self.ids)} images listed in {split_file} "
                                f"have no {what}; first missing: {missing[0]}")

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        paths = self._paths(self.ids[index])
        image = load_image(paths["image"], "RGB").astype(np.float32) / 255.0
        hw = image.shape[:2]
        targets, masks = {}, {}
        full = np.ones(hw, dtype=bool)
        if "semseg" in self.tasks:
            seg = self._semseg(paths["semseg"], hw)
            targets["semseg"], masks["semseg"] = seg, seg >= 0
        if "human_parts" in self.tasks:
            parts = self._human_parts(paths["human_parts"], hw)
            targets["human_parts"], masks["human_parts"] = parts, parts >= 0
        if "saliency" in self.tasks:
            sal = load_image(paths["saliency"])
            if sal.ndim == 3:  # some distilled maps are saved as RGB; they are gray
                sal = sal[..., 0]
            expect_shape(sal, [hw], paths["saliency"], "a saliency map (image size)")
            targets["saliency"], masks["saliency"] = (sal / 255.0 > 0.5).astype(np.float32), full
        if "normals" in self.tasks:
            p = paths["normals"]
            raw = load_image(p)
            expect_shape(raw, [(*hw, 3)], p, "an RGB normal map (image size)")
            n = 2.0 * raw.astype(np.float32) / 255.0 - 1.0
            norm = np.linalg.norm(n, axis=-1)
            valid = np.abs(norm - 1.0) < 0.25
            targets["normals"] = np.where(valid[..., None], n / np.maximum(norm, 1e-6)[..., None], 0.0)
            masks["normals"] = valid
        if "edges" in self.tasks:
            p = paths["edges"]
            if self.edges_from_label_map:
                mat = load_mat(p)
                if "LabelMap" not in mat:
                    raise DataError(f"{p} has no 'LabelMap' variable; expected the PASCAL-Context "
                                    "label map")
                labels = np.asarray(mat["LabelMap"])
                expect_shape(labels, [hw], p, "a LabelMap (image size)")
            else:
                labels = self._semseg(p, hw)
            targets["edges"], masks["edges"] = label_edges(labels), full
        return dense_sample(image, targets, masks)

    @staticmethod
    def _semseg(path: Path, hw) -> np.ndarray:
        seg = load_image(path)
        if seg.ndim != 2:
            raise DataError(f"{path} has {seg.shape[-1]} channels; expected a single-channel "
                            "(gray or palette) label PNG")
        expect_shape(seg, [hw], path, "a label map (image size)")
        seg = seg.astype(np.int64)
        bad = (seg > 20) & (seg != 255)
        if bad.any():
            raise DataError(f"{path} has label {int(seg[bad][0])}; expected 0..20 or 255 (ignore)")
        seg[seg == 255] = -1
        return seg

    @staticmethod
    def _human_parts(path: Path, hw) -> np.ndarray:
        """Part ids of every person with parts; all -1 (ignored) when there is none."""
        mat = load_mat(path)
        target = None
        try:
            objects = mat["anno"][0][0][1][0]
            for obj in objects:
                class_ind = int(np.asarray(obj[1]).ravel()[0])
                parts = obj[3]
                if class_ind != PASCAL_PERSON_CLASS_IND or len(parts) == 0:
                    continue
                if target is None:
                    target = np.zeros(hw, dtype=np.int64)
                for part in parts[0]:
                    name = str(np.asarray(part[0]).ravel()[0])
                    if name not in HUMAN_PART_GROUPS_6:
                        raise DataError(f"{path} has unknown human part '{name}'; expected one of "
                                        f"{', '.join(sorted(HUMAN_PART_GROUPS_6))}")
                    pmask = np.asarray(part[1]).astype(bool)
                    expect_shape(pmask, [hw], path, "part masks (image size)")
                    target[pmask] = HUMAN_PART_GROUPS_6[name]
        except DataError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise DataError(f"{path} does not hold a PASCAL-Part 'anno' struct "
                            f"(anno.objects[i] = class, class_ind, mask, parts): {e}") from None
        if target is None or not (target > 0).any():
            return np.full(hw, -1, dtype=np.int64)
        return target
