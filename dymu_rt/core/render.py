"""Drawing helpers shared by the task pictures: the label palette, colormaps, fonts."""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
from PIL import ImageFont

from .errors import ValidationError
from . import colormaps

IGNORE_COLOR = (224, 224, 192)   # -1 labels, as PASCAL VOC draws its "void" border
INVALID_COLOR = (0, 0, 0)        # invalid depth / normals pixels


@functools.lru_cache(maxsize=None)
def label_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC label palette: ``n`` fixed, mutually distinct colors, uint8 [n, 3].

    Class 0 (background in VOC/PASCAL-Context) is black; the bit-interleaving spreads
    neighbouring labels far apart in RGB, and it is the palette readers of the
    segmentation literature recognise.
    """
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def colorize(values: np.ndarray, cmap: str, vmin: float, vmax: float,
             valid: Optional[np.ndarray] = None, invalid_color=INVALID_COLOR) -> np.ndarray:
    """Map a float [H, W] array through a colormap to uint8 RGB [H, W, 3].

    Values are clipped to [vmin, vmax]; pixels where ``valid`` is False get
    ``invalid_color``. ``cmap`` is one of the bundled maps (:func:`dymu_rt.core.colormaps.names`:
    viridis, magma, ...), matplotlib's exact colors without matplotlib.
    """
    if cmap not in colormaps.names():
        raise ValidationError(f"colormap {cmap!r} is unknown; expected one of {', '.join(colormaps.names())}")
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0)
    # matplotlib's own indexing: entry min(int(t * N), N - 1) of its N = 256 table.
    idx = np.minimum((t * 256).astype(np.int64), 255)
    rgb = colormaps.lut(cmap)[idx]
    if valid is not None:
        rgb[~valid] = invalid_color
    return rgb


@functools.lru_cache(maxsize=None)
def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (scalable when Pillow has FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()
