"""Pictures of a result: one PNG per task per image, plus a side-by-side overview PNG; and,
on request, the raw outputs as ``.npy`` with a JSON that says what each file is.

Every picture is at the input image's size and aspect (label maps resized by nearest
neighbour, dense outputs bilinearly: :meth:`dymu_rt.core.kinds.TaskOutput.at_size`), and
the overview draws each task's key under it (class legend, colour bar).

Uses the torch-free half of the task library (:mod:`dymu_rt.core.kinds`: ``make_output``,
``postprocess``/``visualize``; :func:`dymu_rt.core.overview.overview_image`), so every task
kind is drawn the same way everywhere, and the runtime needs no torch. Files are written
atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dymu_rt.bundle.manifest import TaskEntry
from dymu_rt.core.kinds import LABELLED_KINDS, TaskOutput, make_output, resize_map
from dymu_rt.core.labels import label_names
from dymu_rt.core.overview import overview_image
from dymu_rt.core.io import atomic_write_bytes


#: largest picture / input-size array written per task: an input above it is matched in aspect
#: at this many pixels (a 64 Mpx photo would otherwise cost GiBs per task in float32)
MAX_OUTPUT_PIXELS = 4 * 2**20


def output_size(height: int, width: int) -> tuple[int, int]:
    """(H, W) the outputs of an input of ``height`` x ``width`` are written at: its own size,
    or, above MAX_OUTPUT_PIXELS, the same aspect scaled down to fit."""
    n = height * width
    if n <= MAX_OUTPUT_PIXELS:
        return height, width
    f = (MAX_OUTPUT_PIXELS / n) ** 0.5
    return max(1, int(height * f)), max(1, int(width * f))


def make_tasks(task_specs: Sequence[TaskEntry]) -> list[TaskOutput]:
    """Task outputs (postprocess + picture + legend, no torch) for a manifest's tasks; labelled
    tasks get their label set's class names (:func:`dymu_rt.core.labels.label_names`)."""
    out = []
    for t in task_specs:
        if t.kind in LABELLED_KINDS:
            out.append(make_output(t.kind, t.name, num_classes=t.out_channels,
                                   class_names=label_names(t.kind, t.out_channels)))
        else:
            out.append(make_output(t.kind, t.name))
    return out


def _save_png(img, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_outputs(image, outputs: Mapping[str, np.ndarray], tasks, out_dir: Path, stem: str) -> dict[str, str]:
    """Write ``<stem>_<task>.png`` for each task and ``<stem>_overview.png`` under ``out_dir``,
    each at the input's size (above MAX_OUTPUT_PIXELS: its aspect at that many pixels).

    ``image`` is the input picture (PIL), ``outputs`` one sample's raw outputs (no batch
    dim). Returns task name (and ``"overview"``) -> file path.
    """
    out_dir = Path(out_dir)
    size = output_size(image.height, image.width)
    files, panels, legends = {}, {}, {}
    for task in tasks:
        post = task.at_size(outputs[task.name], size)
        pic = task.visualize(post)
        path = out_dir / f"{stem}_{task.name}.png"
        _save_png(pic, path)
        files[task.name], panels[task.name], legends[task.name] = str(path), pic, task.legend(post)
    path = out_dir / f"{stem}_overview.png"
    _save_png(overview_image(image, panels, legends=legends), path)
    files["overview"] = str(path)
    return files


def output_names(stem: str, tasks) -> list[str]:
    """The files :func:`write_outputs` writes for ``stem`` (checked before anything is written)."""
    return [f"{stem}_{t.name}.png" for t in tasks] + [f"{stem}_overview.png"]


def raw_names(stem: str, tasks) -> list[str]:
    """The files :func:`save_raw` writes for ``stem``."""
    return [f"{stem}_{t.name}{suffix}.npy" for t in tasks for suffix in ("", "_input_size")]


#: what the raw output of each kind holds (for the JSON beside the .npy files)
RAW_MEANING = {
    "segmentation": "class logits, one channel per class; argmax over channels = the label",
    "parts": "class logits, one channel per part class; argmax over channels = the label",
    "depth": "depth in metres (negative values are clipped to 0 in the pictures)",
    "normals": "surface normal x, y, z in the camera frame, not normalized (the pictures divide by the length)",
    "saliency": "logit of 'salient'; sigmoid = probability",
    "edges": "logit of 'edge'; sigmoid = probability",
    "classification": "class logits; softmax = probabilities",
}


def save_raw(image, outputs: Mapping[str, np.ndarray], tasks, out_dir: Path, stem: str,
             source: str) -> list[dict]:
    """Write each task's raw output as float32 ``.npy`` twice: at the model's resolution
    (``<stem>_<task>.npy``, [C, h, w] as the network produced it) and at the input image's
    (``<stem>_<task>_input_size.npy``, [C, H, W], bilinear per channel, :func:`output_size`; classification
    outputs have no map and are written once). Returns one description per file (for the
    JSON index): file, image, task, kind, shape, dtype, resolution, resampling, meaning,
    class_names (labelled kinds)."""
    out_dir = Path(out_dir)
    size = output_size(image.height, image.width)
    rows = []
    for task in tasks:
        raw = np.asarray(outputs[task.name], dtype=np.float32)
        variants = [("", "model", raw, None)]
        if task.resample is not None and raw.ndim == 3:
            variants.append(("_input_size", "input", np.asarray(resize_map(raw, size, "bilinear"), np.float32),
                             "bilinear (pixel centres aligned)"))
        for suffix, resolution, arr, resampling in variants:
            name = f"{stem}_{task.name}{suffix}.npy"
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            atomic_write_bytes(out_dir / name, buf.getvalue())
            row = {"file": name, "image": source, "task": task.name, "kind": task.kind,
                   "shape": list(arr.shape), "dtype": "float32", "resolution": resolution,
                   "resampling": resampling, "meaning": RAW_MEANING.get(task.kind, "raw network output")}
            if getattr(task, "class_names", None):
                row["class_names"] = list(task.class_names)
            rows.append(row)
    return rows
