"""Pictures of a result: one PNG per task per image, plus a side-by-side overview PNG.

Uses the torch-free half of the task library (:mod:`dymu_rt.tasks.kinds`: ``make_output``,
``postprocess``/``visualize``; :func:`dymu_rt.tasks.overview.overview_image`), so every task
kind is drawn the same way everywhere, and the runtime needs no torch. Files are written
atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dymu_rt.bundle.manifest import TaskEntry
from dymu_rt.tasks.kinds import LABELLED_KINDS, TaskOutput, make_output
from dymu_rt.tasks.overview import overview_image
from dymu_rt.utils.io import atomic_write_bytes


def make_tasks(task_specs: Sequence[TaskEntry]) -> list[TaskOutput]:
    """Task outputs (postprocess + picture, no torch) for a manifest's tasks."""
    return [make_output(t.kind, t.name, num_classes=t.out_channels if t.kind in LABELLED_KINDS else None)
            for t in task_specs]


def _save_png(img, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_outputs(image, outputs: Mapping[str, np.ndarray], tasks, out_dir: Path, stem: str) -> dict[str, str]:
    """Write ``<stem>_<task>.png`` for each task and ``<stem>_overview.png`` under ``out_dir``.

    ``image`` is the input picture (PIL), ``outputs`` one sample's raw outputs (no batch
    dim). Returns task name (and ``"overview"``) -> file path.
    """
    out_dir = Path(out_dir)
    files, panels = {}, {}
    for task in tasks:
        pic = task.visualize(task.postprocess(outputs[task.name]))
        path = out_dir / f"{stem}_{task.name}.png"
        _save_png(pic, path)
        files[task.name], panels[task.name] = str(path), pic
    path = out_dir / f"{stem}_overview.png"
    _save_png(overview_image(image, panels), path)
    files["overview"] = str(path)
    return files
