"""Images in, network input out, per a bundle's ``manifest["preprocessing"]``.

Any PIL mode is accepted: 16-bit and float greyscale are rescaled to 8-bit range first
(PIL's own ``convert("RGB")`` would clip them), alpha is dropped (the colour under it is
what the camera saw), palette/CMYK/greyscale go through ``convert("RGB")``. EXIF
orientation is applied (``ImageOps.exif_transpose``) so a phone photo is upright. Then:
resize to ``input_size`` (bilinear), multiply by ``scale`` and, unless the graph does it
(``normalize_in_graph``), subtract ``mean`` and divide by ``std``. A file that is not a
readable image (or is truncated) is refused with one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from dymu_rt.errors import ValidationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def collect_images(paths: Iterable[Union[str, Path]]) -> list[Path]:
    """Expand files and folders (images directly inside, sorted) into a list of files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValidationError(f"folder {p} holds no images (expected files ending in "
                                      f"{', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ValidationError(f"image {p} not found; expected an image file or a folder of images")
    if not out:
        raise ValidationError("no images given; expected one or more image files or folders")
    return out


def load_image(path: Union[str, Path]):
    """Open ``path`` fully decoded and upright, or raise a ValidationError naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()                      # decode now: a truncated file fails here, not later
            return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise ValidationError(f"{path} is not an image file PIL can read; expected PNG, JPEG, ...") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValidationError(f"{path} is not a readable image ({e}); is the file truncated?") from None


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

    h, w = (int(v) for v in spec["input_size"])
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
