"""A least-recently-used cache of loaded engines, bounded in bytes (profile ``engine_cache_mb``).

A switch to a topology whose engine is cached costs no load; a miss loads it and evicts the
least recently used engines until the total fits the budget again. The engine just asked
for is never evicted, so one engine larger than the budget still runs (alone). Evicted
engines are closed; a request already running on one keeps its session alive (see
``OrtEngine.close``). Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable


class EngineCache:
    """topology id -> engine, LRU-bounded by ``budget_bytes`` of ``engine.memory_bytes()``."""

    def __init__(self, budget_bytes: int, loader: Callable[[str], Any]) -> None:
        self.budget_bytes = int(budget_bytes)
        self._loader = loader
        self._engines: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.RLock()
        self.hits = self.misses = self.loads = self.evictions = 0

    def get(self, topology: str):
        """The engine of ``topology``, loading it (and evicting others) when not cached."""
        with self._lock:
            eng = self._engines.get(topology)
            if eng is not None:
                self.hits += 1
                self._engines.move_to_end(topology)
                return eng
            self.misses += 1
            eng = self._loader(topology)
            self.loads += 1
            self._engines[topology] = eng
            self._evict(keep=topology)
            return eng

    def _evict(self, keep: str) -> None:
        while self.bytes() > self.budget_bytes and len(self._engines) > 1:
            victim = next(t for t in self._engines if t != keep)
            self._engines.pop(victim).close()
            self.evictions += 1

    def bytes(self) -> int:
        """Total ``memory_bytes()`` of the cached engines."""
        with self._lock:
            return sum(e.memory_bytes() for e in self._engines.values())

    def __contains__(self, topology: str) -> bool:
        with self._lock:
            return topology in self._engines

    def topologies(self) -> list[str]:
        """Cached topology ids, least recently used first."""
        with self._lock:
            return list(self._engines)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "loads": self.loads, "evictions": self.evictions,
                    "engines": len(self._engines), "bytes": self.bytes(), "budget_bytes": self.budget_bytes}

    def clear(self) -> None:
        with self._lock:
            for e in self._engines.values():
                e.close()
            self._engines.clear()
