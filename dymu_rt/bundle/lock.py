"""One writer at a time per bundle, across threads and processes.

The manifest is rewritten by read-modify-write (``run`` records the engines it compiled,
``profile`` a latency table, ``calibrate`` its INT8 graphs). A lock inside one process does
not stop another process, and eight ``run`` processes on one bundle once recorded 2 of the
5 engines they wrote. :func:`bundle_lock` takes an exclusive ``fcntl.flock`` on
``BUNDLE/.lock`` (released by the kernel if the process dies, so a killed writer never
leaves the bundle locked) and a per-process thread lock; the manifest is re-read under the
lock, so no writer works from a stale copy.

A read-only bundle (the shipped default) takes no file lock: nothing can write it.
Where ``fcntl`` does not exist (Windows), only the thread lock is taken.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:          # pragma: no cover - not on Linux/macOS
    fcntl = None

LOCK_FILE = ".lock"
_THREAD_LOCK = threading.RLock()
_HELD: dict[str, int] = {}          # bundle -> depth, for re-entry by the thread holding it


@contextlib.contextmanager
def bundle_lock(root: str | os.PathLike) -> Iterator[None]:
    """Hold the bundle's writer lock for the ``with`` block (blocks until it is free).
    Re-entrant in the thread that holds it (a second flock on a new descriptor would wait
    for ourselves)."""
    key = os.path.realpath(root)
    with _THREAD_LOCK:
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        fd = None
        if fcntl is not None:
            path = Path(root) / LOCK_FILE
            try:
                # O_NOFOLLOW: a link planted as .lock must not make us create or lock a file elsewhere.
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except PermissionError:
                fd = None                # read-only bundle: no writer can exist
            except OSError as e:
                if e.errno == 30:        # EROFS
                    fd = None
                else:
                    raise
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD[key] = 1
            yield
        finally:
            _HELD.pop(key, None)
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
