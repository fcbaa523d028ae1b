"""Class ids and names of the supported datasets, and the task kinds of their tasks.

* NYU-v2 13 classes (the MTAN / Couprie et al. 13-class set); ``-1`` = ignore.
* PASCAL-Context multi-task (PASCAL_MT of ASTMT / Vandenhende et al.): 21 classes, the
  VOC categories with 0 = background; on disk 255 = ignore (read as -1).
* PASCAL human parts: 7 classes, 0 = background + the 6-part grouping of ASTMT
  (``HUMAN_PART[6]``): head, torso, upper arm, lower arm (with hand), upper leg, lower
  leg (with foot).
* CIFAR-100: 20 superclasses (coarse ids 0..19, official order) of 5 fine classes each.
"""

from __future__ import annotations

import numpy as np

NYU13_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
    "table", "tv", "wall", "window",
)

PASCAL_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

HUMAN_PART_CLASSES = ("background", "head", "torso", "upper_arm", "lower_arm", "upper_leg",
                      "lower_leg")

# PASCAL-Part part names -> the 6-part grouping (ASTMT's HUMAN_PART[6]); 0 = background.
HUMAN_PART_GROUPS_6 = {
    "hair": 1, "head": 1, "lear": 1, "lebrow": 1, "leye": 1, "mouth": 1, "nose": 1,
    "rear": 1, "rebrow": 1, "reye": 1,
    "neck": 2, "torso": 2,
    "luarm": 3, "ruarm": 3,
    "lhand": 4, "llarm": 4, "rhand": 4, "rlarm": 4,
    "luleg": 5, "ruleg": 5,
    "lfoot": 6, "llleg": 6, "rfoot": 6, "rlleg": 6,
}
PASCAL_PERSON_CLASS_IND = 15  # PASCAL-Part's ``class_ind`` of "person"

CIFAR100_SUPERCLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)

# Official CIFAR-100 fine id -> coarse (superclass) id.
CIFAR100_FINE_TO_COARSE = np.array([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
], dtype=np.int64)


def cifar100_local_labels() -> np.ndarray:
    """Fine id -> 0..4 within its superclass, in order of increasing fine id."""
    local = np.zeros(100, dtype=np.int64)
    for coarse in range(20):
        for k, fine in enumerate(np.flatnonzero(CIFAR100_FINE_TO_COARSE == coarse)):
            local[fine] = k
    return local


# The dense tasks the loaders know, and their kinds (docs/INTERFACES.md).
DENSE_TASK_KINDS = {
    "semseg": "segmentation",
    "human_parts": "parts",
    "depth": "depth",
    "normals": "normals",
    "saliency": "saliency",
    "edges": "edges",
}

NYU_TASKS = ("semseg", "normals", "depth")
PASCAL_TASKS = ("semseg", "human_parts", "saliency", "normals", "edges")


def label_names(kind: str, num_classes: int) -> tuple[str, ...] | None:
    """The class names of a labelled task's label set, known from its kind and class count
    (the label sets above: NYU-v2 13, PASCAL-Context 21, human parts 7, CIFAR-100 20
    superclasses), or None for a label set dymu-rt does not know (shown as ``class i``)."""
    known = {("segmentation", 13): NYU13_CLASSES, ("segmentation", 21): PASCAL_CLASSES,
             ("parts", 7): HUMAN_PART_CLASSES, ("classification", 20): CIFAR100_SUPERCLASSES}
    return known.get((kind, int(num_classes)))
