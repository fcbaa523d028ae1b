"""A least-recently-used cache of loaded engines, bounded in bytes (profile ``engine_cache_mb``).

Keys are topology ids (instant engines, loaded on a miss by ``get``) and the Runtime's keys
of folded second-tier engines (one per preference's weights, built elsewhere and ``put``).

A switch to a topology whose engine is cached costs no load; a miss loads it and evicts the
least recently used engines until the total fits the budget again. The engine just asked
for is never evicted, so one engine larger than the budget still runs (alone), and neither
are the ``pinned()`` ones (the Runtime pins the engine of its current preference: requests
may be running on it). Pinning can leave the cache over budget by the pinned engines until
the next load. Evicted engines are closed; a request already running on an ORT engine keeps
its session alive (see ``OrtEngine.close``); engines that bind in place (TensorRT) must not
be evicted while they run, which the Runtime guarantees by serializing loads with runs.

An engine's size is its ``memory_bytes()`` (what it holds privately) plus, for engines that
share one host copy of the bundle's weights (``shared_weights()``: (key, bytes) pairs), each
shared tensor counted **once** for all the engines that reference it: K cached topologies
of one bundle cost one copy of the weights they use, not K. Folded engines hold their own
weights (and a session each): ``max_folded`` caps how many are kept (the profile's
``[memory] folded_engines``), the least recently used going first. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional


#: what marks the key of a folded (second-tier) engine: ``<topology>@folded(<r>, <c>)``
FOLDED_MARK = "@folded"


class EngineCache:
    """topology id -> engine, LRU-bounded by ``budget_bytes`` of ``engine.memory_bytes()``."""

    def __init__(self, budget_bytes: int, loader: Callable[[str], Any],
                 pinned: Optional[Callable[[], Iterable[str]]] = None,
                 max_folded: Optional[int] = None) -> None:
        self.budget_bytes = int(budget_bytes)
        #: at most this many folded (second-tier) engines, keys containing FOLDED_MARK (None: no cap)
        self.max_folded = max_folded
        self._loader = loader
        self._pinned = pinned or (lambda: ())
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

    def lookup(self, key: str):
        """The engine cached under ``key`` (a hit), or None: nothing is loaded."""
        with self._lock:
            eng = self._engines.get(key)
            if eng is not None:
                self.hits += 1
                self._engines.move_to_end(key)
            return eng

    def put(self, key: str, engine) -> None:
        """Cache an engine built elsewhere (the Runtime's second tier: a preference's folded
        engine), evicting least recently used ones to fit the budget."""
        with self._lock:
            old = self._engines.pop(key, None)
            if old is not None and old is not engine:
                old.close()
            self._engines[key] = engine
            self.loads += 1
            self._evict(keep=key)

    def trim(self) -> None:
        """Evict down to the budget and the folded cap again (after the pinned set changed)."""
        with self._lock:
            self._evict(keep="")

    def _evict(self, keep: str) -> None:
        protected = {keep, *self._pinned()}
        if self.max_folded is not None:
            folded = [k for k in self._engines if FOLDED_MARK in k]
            for victim in [k for k in folded if k not in protected][:max(0, len(folded) - self.max_folded)]:
                self._engines.pop(victim).close()
                self.evictions += 1
        while self.bytes() > self.budget_bytes:
            victim = next((t for t in self._engines if t not in protected), None)
            if victim is None:
                break
            self._engines.pop(victim).close()
            self.evictions += 1

    def bytes(self) -> int:
        """Private ``memory_bytes()`` of the cached engines plus their shared weights, each once."""
        with self._lock:
            shared: dict = {}
            for e in self._engines.values():
                shared.update(getattr(e, "shared_weights", lambda: ())())
            return sum(e.memory_bytes() for e in self._engines.values()) + sum(shared.values())

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
