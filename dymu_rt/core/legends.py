"""Keys to the task pictures: a class legend, a colour bar, the normals colour key.

Each is a small RGB picture drawn under its task's tile in the overview
(:func:`dymu_rt.core.overview.overview_image`), so a reader can tell which colour is
which class, how far a colour is in metres and which way a normal colour points.
numpy and PIL only.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .render import colorize, font

TEXT = (0, 0, 0)
BG = (255, 255, 255)
SWATCH = 10
LINE = 13


def class_legend(labels: np.ndarray, palette: np.ndarray, names: Optional[Sequence[str]],
                 max_items: int = 10, width: int = 150) -> Image.Image:
    """The classes present in label map ``labels`` (most pixels first, at most ``max_items``;
    the rest counted in one line): a colour swatch and the class name (or id) each."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    labels = labels[labels >= 0]
    ids, counts = np.unique(labels, return_counts=True) if labels.size else (np.array([], int), np.array([], int))
    order = np.argsort(-counts, kind="stable")
    shown = [int(ids[i]) for i in order[:max_items]]
    rest = len(ids) - len(shown)
    n_lines = len(shown) + (1 if rest > 0 else 0) or 1
    img = Image.new("RGB", (width, 2 + LINE * n_lines), BG)
    draw = ImageDraw.Draw(img)
    f = font(10)
    total = max(1, labels.size)
    for k, cid in enumerate(shown):
        y = 2 + k * LINE
        colour = tuple(int(v) for v in palette[min(cid, len(palette) - 1)])
        draw.rectangle([2, y, 2 + SWATCH, y + SWATCH], fill=colour, outline=(96, 96, 96))
        name = names[cid] if names is not None and 0 <= cid < len(names) else f"class {cid}"
        share = 100.0 * counts[order[k]] / total
        draw.text((6 + SWATCH, y - 1), f"{name} {share:.0f}%", fill=TEXT, font=f)
    if rest > 0:
        draw.text((2, 2 + len(shown) * LINE - 1), f"+{rest} more classes", fill=TEXT, font=f)
    if not shown:
        draw.text((2, 1), "no valid pixels", fill=TEXT, font=f)
    return img


def colour_bar(cmap: str, vmin: float, vmax: float, unit: str, width: int = 150) -> Image.Image:
    """A horizontal colour bar of ``cmap`` from ``vmin`` to ``vmax``, ends labelled in ``unit``."""
    bar_h = 10
    img = Image.new("RGB", (width, bar_h + 2 * LINE), BG)
    ramp = np.linspace(vmin, vmax, width - 4, dtype=np.float64)[None, :].repeat(bar_h, axis=0)
    img.paste(Image.fromarray(colorize(ramp, cmap, vmin, vmax), mode="RGB"), (2, 2))
    draw = ImageDraw.Draw(img)
    f = font(10)
    y = 3 + bar_h
    draw.text((2, y), f"{vmin:.3g}", fill=TEXT, font=f)
    draw.text((width - 2, y), f"{vmax:.3g} {unit}", fill=TEXT, font=f, anchor="ra")
    if unit == "m":
        draw.text((width // 2, y + LINE - 2), "near - far", fill=TEXT, font=f, anchor="ma")
    return img


def normals_key(to_rgb, size: int = 40, width: int = 150) -> Image.Image:
    """The colour of every normal direction facing the camera (a hemisphere seen head-on,
    drawn through the task's own ``to_rgb``), in dymu-rt's camera frame (OpenCV's: x right,
    y down, z forward, so a surface facing the camera has z < 0 and a floor y < 0)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, c)
    inside = x ** 2 + y ** 2 <= 1
    z = np.sqrt(np.clip(1 - x ** 2 - y ** 2, 0, 1))
    n = np.stack([x, y, -z]).astype(np.float32) * inside      # image rows grow downwards, as y does
    disk = to_rgb(n)
    img = Image.new("RGB", (width, size + 4), BG)
    img.paste(disk, (2, 2))
    draw = ImageDraw.Draw(img)
    f = font(10)
    draw.text((size + 8, 2), "RGB = (n + 1) / 2", fill=TEXT, font=f)
    draw.text((size + 8, 2 + LINE), "x right, y down,", fill=TEXT, font=f)
    draw.text((size + 8, 2 + 2 * LINE), "z forward (OpenCV)", fill=TEXT, font=f)
    return img
