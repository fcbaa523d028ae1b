"""Images in, network input out, per a bundle's ``manifest["preprocessing"]``.

Any PIL mode is accepted: 16-bit and float greyscale are rescaled to 8-bit range first
(PIL's own ``convert("RGB")`` would clip them), alpha is dropped (the colour under it is
what the camera saw), palette/CMYK/greyscale go through ``convert("RGB")``. EXIF
orientation is applied (``ImageOps.exif_transpose``) so a phone photo is upright. Then:
resize to ``input_size`` (bilinear), multiply by ``scale`` and, unless the graph does it
(``normalize_in_graph``), subtract ``mean`` and divide by ``std``. A file that is not a
readable image (or is truncated) is refused with one line naming it.

Every size derived from input is bounded before memory is spent on it: an image's pixel
count is read from its header and refused above :data:`MAX_IMAGE_PIXELS` before it is
decoded (a 97-byte PNG can claim 50000 x 50000), PIL's decompression-bomb error becomes
the same one line, and a bundle's ``input_size`` is checked against :data:`MAX_INPUT_SIDE`
and :data:`MAX_INPUT_PIXELS` (:func:`check_input_size`) before a batch is allocated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from dymu_rt.bundle.schema import MAX_INPUT_PIXELS, MAX_INPUT_SIDE  # noqa: F401  (the limits' home)
from dymu_rt.core.errors import ValidationError

from dymu_rt.core.images import (  # noqa: F401,E402  (the loader's home; re-exported)
    IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, _regular_file, collect_images, load_image,
)


def check_input_size(spec: Mapping) -> tuple[int, int]:
    """``spec["input_size"]`` as (H, W), refused unless two integers in [1, MAX_INPUT_SIDE]
    with H x W <= MAX_INPUT_PIXELS (a bundle's manifest is input too)."""
    size = spec.get("input_size") if isinstance(spec, Mapping) else None
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise ValidationError(f"preprocessing.input_size = {size!r}; expected [H, W], two integers")
    h, w = size
    if not (1 <= h <= MAX_INPUT_SIDE and 1 <= w <= MAX_INPUT_SIDE) or h * w > MAX_INPUT_PIXELS:
        raise ValidationError(f"preprocessing.input_size = [{h}, {w}]; expected sides in [1, {MAX_INPUT_SIDE}] "
                              f"and at most {MAX_INPUT_PIXELS:,} pixels")
    return h, w


def to_rgb(img):
    """Any PIL image as 8-bit RGB (see the module docstring for how modes are mapped)."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
        elif mode == "F" and a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        elif mode == "I" and a.size and a.max() > 255:
            a = a / 257.0
        img = Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return img.convert("RGB")


def preprocess_image(img, spec: Mapping) -> np.ndarray:
    """One PIL image -> float32 [3, H, W] as the bundle's graphs expect."""
    from PIL import Image

    h, w = check_input_size(spec)
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise ValidationError(f"image of {img.width} x {img.height} pixels; the limit is {MAX_IMAGE_PIXELS:,}")
    rgb = to_rgb(img)
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32) * np.float32(spec.get("scale", 1 / 255))
    if not spec.get("normalize_in_graph", False):
        x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(images: Sequence, spec: Mapping) -> np.ndarray:
    """A list of PIL images or paths -> float32 NCHW batch."""
    if len(images) == 0:
        raise ValidationError("no images given")
    arrs = [preprocess_image(load_image(im) if isinstance(im, (str, Path)) else im, spec) for im in images]
    return np.stack(arrs)
