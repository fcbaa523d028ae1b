"""Bytes the process holds on the C heap, for charging an engine what it really allocates.

:func:`heap_bytes` reads glibc's ``mallinfo2`` (bytes in use in the malloc arenas plus
mmap'd chunks): unlike RSS it does not hide a new allocation behind memory freed earlier
and reused, and it counts a buffer when it is allocated, not when its pages are first
touched. It is process-wide: allocations other threads make meanwhile are counted too, so
a measured delta is an estimate. ``None`` where there is no glibc (macOS, musl, Windows):
callers fall back to their own estimate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Optional


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.lru_cache(maxsize=1)
def _mallinfo2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2                      # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


def heap_bytes() -> Optional[int]:
    """Bytes in use on the malloc heap (arenas + mmap'd chunks), or None without glibc."""
    fn = _mallinfo2()
    if fn is None:
        return None
    m = fn()
    return int(m.uordblks) + int(m.hblkhd)
