"""Task definitions: per task kind, head size, loss, streaming metrics, postprocess, picture.

One module per kind (``segmentation`` also serves "parts", ``depth``, ``normals``,
``saliency``, ``edges``, ``classification``) on the contract in ``base``; ``registry``
builds tasks by kind, ``weights`` holds the paper's loss scales, ``relative`` the
multi-task Δm. The torch-free parts of a task (its kind, its pictures, the overview of a
prediction) live in :mod:`dymu_rt.core` (``kinds``, ``render``, ``legends``, ``overview``).

The names below are loaded on first use (PEP 562).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Meter": "base",
    "Task": "base",
    "ClassificationTask": "classification",
    "DepthTask": "depth",
    "EdgesTask": "edges",
    "NormalsTask": "normals",
    "TASK_KINDS": "registry",
    "make_task": "registry",
    "delta_m": "relative",
    "SaliencyTask": "saliency",
    "PartsTask": "segmentation",
    "SegmentationTask": "segmentation",
    "PAPER_LOSS_WEIGHTS": "weights",
    "paper_loss_weight": "weights",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
