"""One picture of a prediction: the input image and every task's picture side by side.

Used by ``dymu-rt run`` and the demo. Every tile is scaled to a common height (at least
``min_height``, so 32x32 CIFAR inputs stay legible, and at most ``max_height``), labelled
above, and tiles are laid out left to right, wrapping after ``columns`` tiles when given.

The picture's size never follows the input's size unbounded: the row height is clamped
to ``max_height``, a tile is at most ``MAX_ASPECT`` times as wide as high (a 50000 x 1
image is shrunk to fit, not the other panels blown up to 50000 pixels high), and a key
under a tile at most ``MAX_LEGEND_HEIGHT`` high.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from .errors import ValidationError
from .render import font

BACKGROUND = (255, 255, 255)
LABEL_HEIGHT = 16
GAP = 4
MAX_HEIGHT = 512
MAX_ASPECT = 4
#: tallest key drawn under a tile (a class legend lists at most a dozen classes)
MAX_LEGEND_HEIGHT = 160


def as_rgb_image(image: Union[Image.Image, np.ndarray]) -> Image.Image:
    """A PIL RGB image from a PIL image or an [H, W, 3] array (uint8, or float in [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValidationError(f"image has shape {a.shape}, expected [H, W, 3]")
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(a, mode="RGB")


def _scale_to_height(img: Image.Image, height: int) -> Image.Image:
    """``img`` scaled to ``height`` rows, or smaller to stay within MAX_ASPECT x height wide."""
    width = max(1, round(img.width * height / img.height))
    if width > MAX_ASPECT * height:         # a very wide image: fit the width instead
        width = MAX_ASPECT * height
        height = max(1, round(img.height * width / img.width))
    if (width, height) == img.size:
        return img
    # Nearest keeps label maps crisp when enlarging; shrinking needs a filter.
    resample = Image.Resampling.NEAREST if height > img.height else Image.Resampling.LANCZOS
    return img.resize((width, height), resample)


def _bounded_legend(img: Image.Image, height: int) -> Image.Image:
    """A key cropped to MAX_LEGEND_HEIGHT high and MAX_ASPECT x the row height wide."""
    w, h = min(img.width, MAX_ASPECT * height), min(img.height, MAX_LEGEND_HEIGHT)
    return img if (w, h) == img.size else img.crop((0, 0, w, h))


def overview_image(image: Union[Image.Image, np.ndarray], panels: Mapping[str, Image.Image],
                   columns: Optional[int] = None, min_height: int = 128,
                   image_label: str = "input", max_height: int = MAX_HEIGHT,
                   legends: Optional[Mapping[str, Optional[Image.Image]]] = None,
                   title: Optional[str] = None) -> Image.Image:
    """Tile the input ``image`` and the ``panels`` (label -> picture) with labels, as RGB.

    ``legends`` (label -> key picture or None) are drawn under their panel's tile: a class
    legend, a colour bar. ``title`` is one line above everything (e.g. the preference and the
    tree that produced the panels). Panels keep their own aspect ratio at the row's height, so maps
    at the input's geometry line up with the input.
    """
    if columns is not None and columns < 1:
        raise ValidationError(f"columns {columns!r} is invalid, expected an integer >= 1")
    legends = dict(legends or {})
    first = as_rgb_image(image)
    height = min(max(first.height, int(min_height)), max(int(max_height), int(min_height)))
    tiles = [(image_label, _scale_to_height(first, height), None)]
    tiles += [(str(k), _scale_to_height(as_rgb_image(v), height),
               None if legends.get(k) is None else _bounded_legend(as_rgb_image(legends[k]), height))
              for k, v in panels.items()]
    per_row = columns or len(tiles)
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]

    def slot(t) -> int:
        return max(t[1].width, 0 if t[2] is None else t[2].width)

    def row_height(row) -> int:
        return LABEL_HEIGHT + height + max((GAP + t[2].height for t in row if t[2] is not None), default=0)

    f = font(12)
    head = 0 if not title else LABEL_HEIGHT + GAP
    width = max(sum(slot(t) for t in row) + GAP * (len(row) + 1) for row in rows)
    if title:
        width = max(width, int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=font(13))) + 2 * GAP)
    canvas = Image.new("RGB", (width, head + GAP + sum(row_height(r) + GAP for r in rows)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((GAP, GAP), title, fill=(0, 0, 0), font=font(13))
    y = GAP + head
    for row in rows:
        x = GAP
        for label, tile, legend in row:
            # Shorten labels that would overflow their slot rather than overlap the next one.
            text = label
            while len(text) > 1 and draw.textlength(text, font=f) > slot((label, tile, legend)):
                text = text[:-2] + "…"
            draw.text((x, y + 1), text, fill=(0, 0, 0), font=f)
            canvas.paste(tile, (x, y + LABEL_HEIGHT))
            if legend is not None:
                canvas.paste(legend, (x, y + LABEL_HEIGHT + height + GAP))
            x += slot((label, tile, legend)) + GAP
        y += row_height(row) + GAP
    return canvas
