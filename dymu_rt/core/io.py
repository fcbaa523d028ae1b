"""Atomic file writes and checksums.

Every artifact dymu-rt writes goes through here: content is written to a temporary
file in the destination folder, flushed, fsynced and renamed over the target, so a
killed process never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DymuError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The caller writes the file at the yielded path by any means (``torch.onnx.export``,
    ``safetensors.save_file``...). On an exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600; artifacts get the usual permissions of a new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


#: Largest JSON document read (run configs, manifests): real ones are kilobytes to a few MB.
MAX_JSON_BYTES = 64 * 2**20


class _NonFinite(ValueError):
    pass


def _no_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise _NonFinite(text[:40])
    return v


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning a missing or malformed file into one clear error."""
    path = Path(path)
    if not path.is_file():
        raise DymuError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DymuError(f"{what} {path} is {size:,} bytes; the limit is {MAX_JSON_BYTES:,}")
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except _NonFinite as e:
        raise DymuError(f"{what} {path} holds a non-finite number ({e}); expected finite numbers") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DymuError(f"{what} {path} is not valid JSON ({e})") from None
    except RecursionError:      # e.g. 200,000 nested lists: json recurses once per level
        raise DymuError(f"{what} {path} is nested too deeply to be a dymu-rt file") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
