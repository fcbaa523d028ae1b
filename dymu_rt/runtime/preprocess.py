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

import warnings
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

import numpy as np

from dymu_rt.bundle.schema import MAX_INPUT_PIXELS, MAX_INPUT_SIDE  # noqa: F401  (the limits' home)
from dymu_rt.errors import ValidationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

#: Largest image decoded (width x height): 64 Mpx, more than any camera's default output;
#: decoded to RGB that is 192 MB, and a few working copies fit in 1 GB.
MAX_IMAGE_PIXELS = 64_000_000


def _regular_file(p: Path) -> bool:
    """True for a regular file (following symlinks); False for a FIFO, device or socket,
    which would block or never end if opened as an image."""
    import stat

    try:
        return stat.S_ISREG(p.stat().st_mode)
    except OSError:
        return False


def collect_images(paths: Iterable[Union[str, Path]]) -> list[Path]:
    """Expand files and folders (images directly inside, sorted) into a list of files.

    An empty argument is refused (``Path("")`` is the current folder, which the user did
    not ask for), and so is anything that exists but is not a regular file or a folder.
    """
    out: list[Path] = []
    for raw in paths:
        if isinstance(raw, str) and not raw.strip():
            raise ValidationError(f"image argument {raw!r} is empty; expected an image file or a folder of images")
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and _regular_file(f))
            if not found:
                raise ValidationError(f"folder {p} holds no images (expected files ending in "
                                      f"{', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif _regular_file(p):
            out.append(p)
        elif p.exists():
            raise ValidationError(f"image {p} is not a regular file (a FIFO, device or socket); "
                                  f"expected an image file or a folder of images")
        else:
            raise ValidationError(f"image {p} not found; expected an image file or a folder of images")
    if not out:
        raise ValidationError("no images given; expected one or more image files or folders")
    return out


def load_image(path: Union[str, Path]):
    """Open ``path`` fully decoded and upright, or raise a ValidationError naming it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not _regular_file(path):
        raise ValidationError(f"image {path} is not a regular file; expected an image file")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit; ours (checked next) is lower and says it in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size             # from the header: nothing decoded yet
                if w * h > MAX_IMAGE_PIXELS:
                    raise ValidationError(f"{path} is {w} x {h} = {w * h:,} pixels; the limit is "
                                          f"{MAX_IMAGE_PIXELS:,} (downscale it first)")
                img.load()                  # decode now: a truncated file fails here, not later
                return ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as e:   # not an OSError: PIL's own pixel limit
        raise ValidationError(f"{path} is refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ValidationError(f"{path} is not an image file PIL can read; expected PNG, JPEG, ...") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, ValidationError):
            raise
        raise ValidationError(f"{path} is not a readable image ({e}); is the file truncated?") from None


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
