"""Limits every user-given size and count is checked against (one home for them).

* thread counts: at most :func:`max_threads` (the machine's cores x :data:`THREAD_FACTOR`);
  ``--threads 10**9`` once made ONNX Runtime throw ``std::bad_alloc`` and libgomp try to
  reserve 216 GB;
* memory: :func:`memory_budget` (half the physical memory, at most :data:`MAX_BUDGET`) bounds
  what a graph's initializers, external data and constant-shape allocations may claim, and
  what a run config may ask a model or data set to allocate.
"""

from __future__ import annotations

import os

from .errors import ValidationError

#: A thread count may exceed the cores by this factor (oversubscription is legitimate, 10**9 is not).
THREAD_FACTOR = 4
#: Upper bound of the memory budget whatever the machine (a bundle is never this large).
MAX_BUDGET = 64 * 2**30


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    """The largest thread count accepted anywhere: cores x THREAD_FACTOR (at least 8)."""
    return max(8, cores() * THREAD_FACTOR)


def check_threads(value, what: str = "--threads", allow_zero: bool = True):
    """``value`` if it is an integer in [0 (all cores) or 1, max_threads()], else one
    ValidationError line naming ``what``; None passes (the default)."""
    if value is None:
        return None
    lo = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= max_threads():
        raise ValidationError(f"{what} = {value!r}: expected an integer from {lo} to {max_threads()} "
                              f"({cores()} cores x {THREAD_FACTOR}{'; 0 = all cores' if allow_zero else ''})")
    return value


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_budget() -> int:
    """Bytes one artifact may make us allocate: half the physical memory, at most MAX_BUDGET
    (``DYMU_RT_MEMORY_BUDGET_MB`` lowers it)."""
    budget = min(physical_memory() // 2, MAX_BUDGET)
    env = os.environ.get("DYMU_RT_MEMORY_BUDGET_MB", "")
    if env.isdigit() and int(env) > 0:
        budget = min(budget, int(env) * 2**20)
    return budget
