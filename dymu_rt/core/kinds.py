"""Task kinds without torch: what a runtime needs to turn raw outputs into answers and pictures.

:class:`TaskOutput` is the torch-free half of a task: its name, head size, kind, options,
``postprocess`` (one raw output -> the task's answer) and ``visualize`` (-> an RGB picture),
numpy and PIL only. The torch half (losses, streaming meters) is :class:`dymu_rt.tasks.base.Task`,
which every kind's task class adds on top of its output class (``SegmentationTask(SegmentationOutput,
Task)``), so training, evaluation and the runtime draw every kind the same way.

:data:`OUTPUT_KINDS` and :data:`LABELLED_KINDS` are the one spelling of the kinds;
:func:`make_output` builds an output by kind with the same validation as
:func:`dymu_rt.tasks.registry.make_task` (both use :func:`build`).
"""

from __future__ import annotations

import abc
import inspect
import math
import numbers
from typing import Any, ClassVar, Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .errors import ValidationError
from .legends import class_legend, colour_bar, normals_key
from .render import IGNORE_COLOR, INVALID_COLOR, colorize, font, label_palette

#: kinds whose head size is a number of classes (given by the user), not fixed by the kind
LABELLED_KINDS = ("segmentation", "parts", "classification")
#: dense kinds whose targets are integer label maps (-1 = ignore)
LABEL_MAP_KINDS = ("segmentation", "parts")
#: dense kinds whose targets are resized by nearest neighbour (labels and binary maps)
NEAREST_RESIZE_KINDS = LABEL_MAP_KINDS + ("saliency", "edges")


class TaskOutput(abc.ABC):
    """One task's outputs: name, head size (``out_channels``), loss weight w_i, kind.

    Subclasses set the class attribute ``kind`` and implement ``postprocess`` and ``visualize``.
    """

    kind: ClassVar[str]

    def __init__(self, name: str, out_channels: int, loss_weight: float = 1.0) -> None:
        self.name = name
        self.out_channels = int(out_channels)
        self.loss_weight = float(loss_weight)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, "
                f"out_channels={self.out_channels}, loss_weight={self.loss_weight:g})")

    @abc.abstractmethod
    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Turn ONE raw output ([C, H, W] or [C], no batch dimension) into the task's answer."""

    @abc.abstractmethod
    def visualize(self, post: np.ndarray) -> Image.Image:
        """An RGB picture (uint8, PIL) of one postprocessed output."""

    #: how a dense output is brought to another size: "bilinear" (the raw output, then
    #: postprocess) or "nearest" (the postprocessed labels); None: not a map (classification)
    resample: ClassVar[Optional[str]] = "bilinear"

    def at_size(self, out: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """ONE raw output -> the task's answer at ``size`` = (H, W), e.g. the input image's:
        label maps by nearest neighbour (no invented labels at boundaries), dense values
        bilinearly before postprocessing (a normal is re-normalized after interpolation)."""
        if self.resample is None:
            return self.postprocess(out)
        if self.resample == "nearest":
            post = self.postprocess(out)
            return resize_map(post, size, "nearest")
        return self.postprocess(resize_map(self._check_out(out, 3), size, "bilinear"))

    def legend(self, post: np.ndarray) -> Optional[Image.Image]:
        """A key to :meth:`visualize`'s picture of ``post`` (class names, a colour bar), or None."""
        return None

    def _check_out(self, out: np.ndarray, ndim: int) -> np.ndarray:
        """``out`` as a float array of ``ndim`` dims whose first dim is ``out_channels``."""
        out = np.asarray(out)
        if out.ndim != ndim or out.shape[0] != self.out_channels:
            want = "[C, H, W]" if ndim == 3 else "[C]"
            raise ValidationError(
                f"task {self.name!r}: raw output has shape {tuple(out.shape)}, expected {want} "
                f"with C = {self.out_channels} (one sample, no batch dimension)")
        return out.astype(np.float32, copy=False)


def _check_range(value_range):
    if value_range is None:
        return None
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValidationError(f"depth value_range {value_range!r} is invalid, expected (near, far) with near < far")
    return lo, hi


def _classes(name: str, num_classes: int, class_names: Optional[Sequence[str]]):
    """(num_classes, class names as a tuple or None) of a class-valued task, checked against each other."""
    n = int(num_classes)
    if class_names is not None and len(class_names) != n:
        raise ValidationError(f"task {name!r}: {len(class_names)} class names given, expected {n}")
    return n, (tuple(class_names) if class_names is not None else None)


def resize_map(a: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """[H, W] or [C, H, W] array -> the same at ``size`` = (H, W): "nearest" keeps the values
    (labels), "bilinear" interpolates (float32) with pixel centres aligned
    (PIL's, as OpenCV's INTER_LINEAR and torch's align_corners=False)."""
    a = np.asarray(a)
    h, w = int(size[0]), int(size[1])
    if a.shape[-2:] == (h, w):
        return a
    if a.ndim == 3:
        return np.stack([resize_map(ch, size, method) for ch in a])
    if method == "nearest":
        img = Image.fromarray(a.astype(np.int32), mode="I").resize((w, h), Image.Resampling.NEAREST)
        return np.asarray(img).astype(a.dtype)
    img = Image.fromarray(a.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


BAR_COLOR = (90, 120, 170)


TOP_COLOR = (230, 120, 30)


class SegmentationOutput(TaskOutput):
    """Per-pixel classification into ``num_classes`` labels (-1 = ignore)."""

    kind = "segmentation"
    resample = "nearest"

    def __init__(self, name: str, num_classes: int, loss_weight: float = 1.0,
                 class_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(name, num_classes, loss_weight)
        self.num_classes, self.class_names = _classes(name, num_classes, class_names)

    def legend(self, post: np.ndarray) -> Image.Image:
        """The classes in label map ``post``, most pixels first, with their names and share."""
        return class_legend(post, label_palette(max(256, self.num_classes)), self.class_names)

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw logits [C, H, W] -> label map [H, W] (int64, argmax over classes)."""
        return self._check_out(out, 3).argmax(axis=0).astype(np.int64)

    def visualize(self, post: np.ndarray) -> Image.Image:
        """Label map [H, W] -> palette picture; -1 (ignore, e.g. in a ground truth) is light grey."""
        labels = np.asarray(post).astype(np.int64)
        pal = label_palette(max(256, self.num_classes))
        rgb = pal[np.clip(labels, 0, len(pal) - 1)]
        rgb[labels < 0] = IGNORE_COLOR
        return Image.fromarray(rgb, mode="RGB")


class DepthOutput(TaskOutput):
    """Per-pixel depth regression in metres."""

    kind = "depth"

    def __init__(self, name: str, loss_weight: float = 1.0,
                 value_range: Optional[tuple[float, float]] = None, cmap: str = "viridis") -> None:
        super().__init__(name, 1, loss_weight)
        self.value_range = _check_range(value_range)
        self.cmap = cmap

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw output [1, H, W] -> depth map [H, W] in metres (negative values clipped to 0)."""
        return np.clip(self._check_out(out, 3)[0], 0.0, None)

    def visualize(self, post: np.ndarray, value_range: Optional[tuple[float, float]] = None) -> Image.Image:
        """Depth map [H, W] -> colormapped picture.

        ``value_range`` (near, far) overrides the task's; with neither, the image's own
        range of valid depths is used.
        """
        d, valid = self._valid(post)
        rng = self.display_range(post, value_range)
        return Image.fromarray(colorize(d, self.cmap, rng[0], rng[1], valid), mode="RGB")

    @staticmethod
    def _valid(post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(post, dtype=np.float32)
        if d.ndim == 3 and d.shape[0] == 1:
            d = d[0]
        return d, np.isfinite(d) & (d > 0)

    def display_range(self, post: np.ndarray,
                      value_range: Optional[tuple[float, float]] = None) -> tuple[float, float]:
        """The (near, far) metres :meth:`visualize` maps to the ends of the colormap."""
        rng = _check_range(value_range) or self.value_range
        if rng is None:
            d, valid = self._valid(post)
            rng = (float(d[valid].min()), float(d[valid].max())) if valid.any() else (0.0, 1.0)
        return rng

    def legend(self, post: np.ndarray) -> Image.Image:
        """A colour bar from the near to the far end of the picture's range, in metres."""
        lo, hi = self.display_range(post)
        return colour_bar(self.cmap, lo, hi, "m")


class NormalsOutput(TaskOutput):
    """Per-pixel unit surface normal (camera frame)."""

    kind = "normals"

    def __init__(self, name: str, loss_weight: float = 1.0) -> None:
        super().__init__(name, 3, loss_weight)

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw output [3, H, W] -> unit normals [3, H, W] (float32; a 0-vector stays 0)."""
        v = self._check_out(out, 3)
        n = np.linalg.norm(v, axis=0, keepdims=True)
        return np.where(n > 0, v / np.maximum(n, 1e-12), 0.0).astype(np.float32)

    def visualize(self, post: np.ndarray) -> Image.Image:
        """Unit normals [3, H, W] -> RGB = (n + 1) / 2; 0-vectors (invalid) are black."""
        n = np.asarray(post, dtype=np.float32)
        rgb = (np.clip((n.transpose(1, 2, 0) + 1.0) * 0.5, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        rgb[~np.any(n != 0, axis=0)] = INVALID_COLOR
        return Image.fromarray(rgb, mode="RGB")

    def legend(self, post: np.ndarray) -> Image.Image:
        """The colour of each direction facing the camera, drawn by :meth:`visualize`."""
        return normals_key(self.visualize)


class SaliencyOutput(TaskOutput):
    """Per-pixel salient-object probability (one logit)."""

    kind = "saliency"

    def __init__(self, name: str, loss_weight: float = 1.0) -> None:
        super().__init__(name, 1, loss_weight)

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw logit [1, H, W] -> saliency probability [H, W] in [0, 1] (float32)."""
        return (1.0 / (1.0 + np.exp(-self._check_out(out, 3)[0].astype(np.float64)))).astype(np.float32)

    def visualize(self, post: np.ndarray) -> Image.Image:
        """Probability map [H, W] -> grey RGB picture (white = salient)."""
        p = np.asarray(post, dtype=np.float32)
        p = p[0] if p.ndim == 3 else p
        g = (np.clip(np.nan_to_num(p), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), mode="RGB")


class EdgesOutput(TaskOutput):
    """Per-pixel edge probability (one logit)."""

    kind = "edges"

    def __init__(self, name: str, loss_weight: float = 1.0, pos_weight: Optional[float] = None,
                 threshold: float = 0.5, tolerance: int = 0) -> None:
        super().__init__(name, 1, loss_weight)
        if pos_weight is not None and not 0.0 <= pos_weight <= 1.0:
            raise ValidationError(f"edges pos_weight {pos_weight!r} is invalid, expected a value in [0, 1] or None")
        if not 0.0 < threshold < 1.0:
            raise ValidationError(f"edges threshold {threshold!r} is invalid, expected a value in (0, 1)")
        if int(tolerance) != tolerance or tolerance < 0:
            raise ValidationError(f"edges tolerance {tolerance!r} is invalid, expected a whole number of pixels >= 0")
        self.pos_weight = pos_weight
        self.threshold = float(threshold)
        self.tolerance = int(tolerance)

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw logit [1, H, W] -> edge probability [H, W] in [0, 1] (float32).

        Binarize with ``post >= task.threshold`` for the edges the metrics count.
        """
        return (1.0 / (1.0 + np.exp(-self._check_out(out, 3)[0].astype(np.float64)))).astype(np.float32)

    def visualize(self, post: np.ndarray) -> Image.Image:
        """Edge probability [H, W] -> picture with dark edges on white, like a drawing."""
        p = np.asarray(post, dtype=np.float32)
        p = p[0] if p.ndim == 3 else p
        g = ((1.0 - np.clip(np.nan_to_num(p), 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=2), mode="RGB")


class ClassificationOutput(TaskOutput):
    """Whole-image classification into ``num_classes`` classes."""

    kind = "classification"
    resample = None

    def __init__(self, name: str, num_classes: int, loss_weight: float = 1.0,
                 class_names: Optional[Sequence[str]] = None) -> None:
        super().__init__(name, num_classes, loss_weight)
        self.num_classes, self.class_names = _classes(name, num_classes, class_names)

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        """Raw logits [C] -> class probabilities [C] (softmax, float32); ``.argmax()`` is the class."""
        z = self._check_out(out, 1).astype(np.float64)
        e = np.exp(z - z.max())
        return (e / e.sum()).astype(np.float32)

    def visualize(self, post: np.ndarray, size: tuple[int, int] = (160, 120)) -> Image.Image:
        """Probabilities [C] -> bar chart of ``size`` = (width, height), arg-max bar in orange."""
        p = np.clip(np.nan_to_num(np.asarray(post, dtype=np.float64).reshape(-1)), 0.0, 1.0)
        w, h = size
        img = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        f = font(10)
        label_h, top_h, pad = 12, 12, 4
        plot_h = max(1, h - label_h - top_h - pad)
        slot = (w - 2 * pad) / max(1, len(p))
        top = int(p.argmax()) if len(p) else -1
        for i, v in enumerate(p):
            x0, x1 = pad + i * slot + 0.15 * slot, pad + (i + 1) * slot - 0.15 * slot
            y1 = top_h + plot_h
            draw.rectangle([x0, y1 - v * plot_h, x1, y1], fill=TOP_COLOR if i == top else BAR_COLOR)
            name = self.class_names[i] if self.class_names else str(i)
            draw.text(((x0 + x1) / 2, y1 + 1), name[: max(1, int(slot // 6))], fill=(0, 0, 0), font=f, anchor="ma")
        draw.line([pad, top_h + plot_h, w - pad, top_h + plot_h], fill=(0, 0, 0))
        if top >= 0:
            name = self.class_names[top] if self.class_names else f"class {top}"
            draw.text((pad, 1), f"{name}: {p[top]:.2f}", fill=(0, 0, 0), font=f)
        return img



class PartsOutput(SegmentationOutput):
    """Human-part segmentation (PASCAL-Context ``human_parts``): segmentation by another name."""

    kind = "parts"


OUTPUT_KINDS: dict[str, type[TaskOutput]] = {
    cls.kind: cls for cls in (SegmentationOutput, PartsOutput, DepthOutput, NormalsOutput, SaliencyOutput,
                              EdgesOutput, ClassificationOutput)
}


def build(classes: Mapping[str, type], kind: str, name: str, num_classes: Optional[int] = None,
          loss_weight: float = 1.0, **options: Any):
    """An instance of ``classes[kind]`` named ``name``, every argument validated (one line each).

    ``num_classes`` is required by the labelled kinds (segmentation, parts,
    classification) and must be None or match the fixed head size of the others
    (depth 1, normals 3, saliency 1, edges 1). ``loss_weight`` is w_i. ``options`` are
    kind-specific keyword arguments (depth ``value_range``/``cmap``; edges
    ``pos_weight``/``threshold``/``tolerance``; classification ``class_names``).
    """
    if kind not in classes:
        raise ValidationError(f"task kind {kind!r} is unknown, expected one of {', '.join(classes)}")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"task name {name!r} is invalid, expected a non-empty string")
    try:
        w = float(loss_weight)
    except (TypeError, ValueError):
        w = float("nan")
    if not (math.isfinite(w) and w >= 0):
        raise ValidationError(f"task {name!r}: loss_weight {loss_weight!r} is invalid, expected a finite number >= 0")
    cls = classes[kind]
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


def make_output(kind: str, name: str, num_classes: Optional[int] = None, **options: Any) -> TaskOutput:
    """The torch-free output of a task of ``kind`` (see :func:`build` for the arguments)."""
    return build(OUTPUT_KINDS, kind, name, num_classes, **options)
