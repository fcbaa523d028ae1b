"""Reading user images, the one loader every command uses (``run``, ``calibrate``, ...).

An image is untrusted input: :func:`collect_images` accepts regular files and folders of
them only (no FIFO, device or empty argument), :func:`load_image` checks the pixel count
in the header before anything is decoded (a 97-byte PNG can claim 50000 x 50000) and turns
PIL's own bomb errors (decompression bombs, oversized zTXt/iCCP chunks) and truncated files
into one ValidationError line. It lives below every layer that reads images
(``dymu_rt.runtime.preprocess`` re-exports it) so ``calibrate`` shares ``run``'s guard.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Union

from .errors import ValidationError

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
