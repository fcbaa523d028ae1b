"""``make_task``: the one place that turns (kind, name, options) into a :class:`Task`."""

from __future__ import annotations

from typing import Any, Optional

from dymu_rt.tasks.base import Task
from dymu_rt.tasks.classification import ClassificationTask
from dymu_rt.tasks.depth import DepthTask
from dymu_rt.tasks.edges import EdgesTask
from dymu_rt.core.kinds import LABELLED_KINDS, OUTPUT_KINDS, build  # noqa: F401  (LABELLED_KINDS: public)
from dymu_rt.tasks.normals import NormalsTask
from dymu_rt.tasks.saliency import SaliencyTask
from dymu_rt.tasks.segmentation import PartsTask, SegmentationTask

TASK_KINDS: dict[str, type[Task]] = {
    cls.kind: cls for cls in (SegmentationTask, PartsTask, DepthTask, NormalsTask, SaliencyTask,
                              EdgesTask, ClassificationTask)
}
assert set(TASK_KINDS) == set(OUTPUT_KINDS), "every task kind has its torch-free output class"


def make_task(kind: str, name: str, num_classes: Optional[int] = None, loss_weight: float = 1.0,
              **options: Any) -> Task:
    """A task of ``kind`` named ``name`` (arguments as :func:`dymu_rt.core.kinds.build`)."""
    return build(TASK_KINDS, kind, name, num_classes, loss_weight, **options)
