"""Reading dataset files with one clear DataError per problem (naming file and expectation)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dymu_rt.core.errors import DataError


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a DataError saying what was expected there."""
    if not path.is_dir():
        raise DataError(f"{what} folder not found: {path}")
    return path


def load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array (never pickled objects)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npy array (truncated or corrupt?): {e}") from None
    if not isinstance(arr, np.ndarray) or not (np.issubdtype(arr.dtype, np.number)
                                               or arr.dtype == bool):
        raise DataError(f"{path} has dtype {getattr(arr, 'dtype', type(arr))}; expected a numeric array")
    return arr


def load_image(path: Path, mode: str | None = None) -> np.ndarray:
    """A JPEG/PNG as a numpy array; ``mode`` converts (e.g. "RGB"), None keeps it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable image (truncated or corrupt?): {e}") from None


def load_mat(path: Path) -> dict:
    """A MATLAB .mat file via scipy.io.loadmat."""
    import scipy.io

    try:
        return scipy.io.loadmat(os.fspath(path))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except Exception as e:  # scipy raises ValueError, MatReadError, TypeError... on bad files
        raise DataError(f"{path} is not a readable .mat file (truncated or corrupt?): {e}") from None


def expect_shape(arr: np.ndarray, shapes: list[tuple], path: Path, what: str) -> None:
    """DataError unless ``arr.shape`` matches one of ``shapes`` (None = any length)."""
    for shape in shapes:
        if len(shape) == arr.ndim and all(s is None or s == a for s, a in zip(shape, arr.shape)):
            return
    want = " or ".join("x".join("?" if s is None else str(s) for s in sh) for sh in shapes)
    raise DataError(f"{path} has shape {'x'.join(map(str, arr.shape))}; expected {what} of shape {want}")
