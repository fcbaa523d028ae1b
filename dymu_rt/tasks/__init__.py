"""Task definitions: per task kind, head size, loss, streaming metrics, postprocess, picture.

One module per kind (``segmentation`` also serves "parts", ``depth``, ``normals``,
``saliency``, ``edges``, ``classification``) on the contract in ``base``; ``registry``
builds tasks by kind, ``weights`` holds the paper's loss scales, ``relative`` the
multi-task Δm, ``overview`` the side-by-side picture of a prediction.
"""

from dymu_rt.tasks.base import Meter, Task
from dymu_rt.tasks.classification import ClassificationTask
from dymu_rt.tasks.depth import DepthTask
from dymu_rt.tasks.edges import EdgesTask
from dymu_rt.tasks.normals import NormalsTask
from dymu_rt.tasks.overview import overview_image
from dymu_rt.tasks.registry import TASK_KINDS, make_task
from dymu_rt.tasks.relative import delta_m
from dymu_rt.tasks.saliency import SaliencyTask
from dymu_rt.tasks.segmentation import PartsTask, SegmentationTask
from dymu_rt.tasks.weights import PAPER_LOSS_WEIGHTS, paper_loss_weight

__all__ = [
    "Task", "Meter", "make_task", "TASK_KINDS", "PAPER_LOSS_WEIGHTS", "paper_loss_weight", "delta_m",
    "overview_image", "SegmentationTask", "PartsTask", "DepthTask", "NormalsTask", "SaliencyTask",
    "EdgesTask", "ClassificationTask",
]
