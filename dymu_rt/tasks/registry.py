"""``make_task``: the one place that turns (kind, name, options) into a :class:`Task`."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Optional

from dymu_rt.errors import ValidationError
from dymu_rt.tasks.base import Task
from dymu_rt.tasks.classification import ClassificationTask
from dymu_rt.tasks.depth import DepthTask
from dymu_rt.tasks.edges import EdgesTask
from dymu_rt.tasks.normals import NormalsTask
from dymu_rt.tasks.saliency import SaliencyTask
from dymu_rt.tasks.segmentation import PartsTask, SegmentationTask

TASK_KINDS: dict[str, type[Task]] = {
    cls.kind: cls for cls in (SegmentationTask, PartsTask, DepthTask, NormalsTask, SaliencyTask,
                              EdgesTask, ClassificationTask)
}
LABELLED_KINDS = ("segmentation", "parts", "classification")


def make_task(kind: str, name: str, num_classes: Optional[int] = None, loss_weight: float = 1.0,
              **options: Any) -> Task:
    """A task of ``kind`` named ``name``.

    ``num_classes`` is required by the labelled kinds (segmentation, parts,
    classification) and must be None or match the fixed head size of the others
    (depth 1, normals 3, saliency 1, edges 1). ``loss_weight`` is w_i. ``options`` are
    kind-specific keyword arguments (depth ``value_range``/``cmap``; edges
    ``pos_weight``/``threshold``/``tolerance``; classification ``class_names``).
    """
    if kind not in TASK_KINDS:
        raise ValidationError(f"task kind {kind!r} is unknown, expected one of {', '.join(TASK_KINDS)}")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"task name {name!r} is invalid, expected a non-empty string")
    try:
        w = float(loss_weight)
    except (TypeError, ValueError):
        w = float("nan")
    if not (math.isfinite(w) and w >= 0):
        raise ValidationError(f"task {name!r}: loss_weight {loss_weight!r} is invalid, expected a finite number >= 0")
    cls = TASK_KINDS[kind]
    known = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "name", "num_classes",
                                                                               "loss_weight")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValidationError(f"task {name!r} ({kind}): option {unknown[0]!r} is unknown, "
                              f"expected one of {', '.join(known) or '(none)'}")
    if kind in LABELLED_KINDS:
        if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValidationError(f"task {name!r} ({kind}): num_classes {num_classes!r} is invalid, "
                                  f"expected an integer >= 2")
        return cls(name, int(num_classes), loss_weight=w, **options)
    task = cls(name, loss_weight=w, **options)
    if num_classes is not None and num_classes != task.out_channels:
        raise ValidationError(f"task {name!r} ({kind}): num_classes {num_classes!r} is invalid, "
                              f"expected None or {task.out_channels}")
    return task
