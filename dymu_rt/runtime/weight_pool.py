"""One host copy of a bundle's weights, shared by every engine (store once, hold once).

A bundle stores every tensor once (``graphs/weights.bin``: the full tree folded at the
anchor, docs/INTERFACES.md). Everything a backend needs to bind a preference is *derived*
from that copy here instead of being stored a second time:

* a stored tensor: a read-only memory map of its bytes (:meth:`WeightPool.tensor`); the
  pages are the file's, so K engines referencing the same tensor hold it once;
* the *raw* (unfolded) conv weight of a modulated slot, which affine binding and refits need:
  the graphs hold ``W'_anchor = W · s0`` with ``s0 = γ / sqrt(var + eps)`` (BN folded at
  Δγ = Δβ = 0), so ``W = W'_anchor / s0`` per output channel
  (:meth:`WeightPool.raw_weight`, computed once per slot and cached). A channel with
  ``s0 == 0`` has lost its raw values in the fold; the build stores the raw weight of such
  a (rare) slot in ``fold_params`` (``<slot>.weight``), and that copy is used instead.

The bytes :meth:`WeightPool.nbytes` reports are what the engine cache charges once for all
engines together (the LRU budget counts shared weights once).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from dymu_rt.errors import BundleError

#: |s0| below this is treated as a lost channel (raw weight must come from fold_params).
MIN_SCALE = 1e-30


def anchor_scale(fold: Mapping[str, np.ndarray], slot: str, eps: float) -> np.ndarray:
    """``s0 = γ / sqrt(var + eps)`` of ``slot`` at the anchor (float32, as the fold computed it)."""
    gamma = np.asarray(fold[f"{slot}.bn_weight"], np.float32)
    var = np.asarray(fold[f"{slot}.bn_var"], np.float32)
    return (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)


def needs_raw_copy(fold: Mapping[str, np.ndarray], slot: str, eps: float) -> bool:
    """True when ``slot``'s raw conv weight cannot be recovered from the folded one."""
    return bool((np.abs(anchor_scale(fold, slot, eps)) < MIN_SCALE).any())


class WeightPool:
    """The bundle's tensors, memory-mapped once, plus derived raw conv weights (cached)."""

    def __init__(self, root: Path, weights: Mapping, fold: Mapping[str, np.ndarray], eps: float) -> None:
        self.root = Path(root)
        self._index = weights["tensors"]
        self._fold = fold
        self._eps = float(eps)
        path = self.root / weights["file"]
        try:
            self._file = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise BundleError(f"bundle {root}: cannot map the weights file {path} ({e}); rebuild the bundle") from None
        self._raw: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def tensor(self, name: str) -> np.ndarray:
        """A stored tensor (read-only view of the mapped file)."""
        t = self._index.get(name)
        if t is None:
            raise BundleError(f"bundle {self.root}: the weights file holds no tensor {name!r}; rebuild the bundle")
        off, n = int(t["offset"]), int(t["length"])
        return self._file[off:off + n].view(np.dtype(t["dtype"]).newbyteorder("<")).reshape(t["shape"])

    def raw_weight(self, slot: str) -> np.ndarray:
        """The unfolded conv weight W of modulated ``slot`` (see the module docstring)."""
        with self._lock:
            w = self._raw.get(slot)
            if w is None:
                if f"{slot}.weight" in self._fold:
                    w = np.ascontiguousarray(self._fold[f"{slot}.weight"], np.float32)
                else:
                    s0 = anchor_scale(self._fold, slot, self._eps)
                    if (np.abs(s0) < MIN_SCALE).any():
                        raise BundleError(f"bundle {self.root}: slot {slot} has a zero BN scale and no stored raw "
                                          "weight; rebuild the bundle")
                    folded = self.tensor(f"{slot}.conv.weight")
                    w = (folded / s0.reshape((-1,) + (1,) * (folded.ndim - 1))).astype(np.float32)
                w.setflags(write=False)
                self._raw[slot] = w
            return w

    def raw_weights(self, slots: Iterable[str]) -> dict[str, np.ndarray]:
        """``{"<slot>.weight": W}`` for ``slots`` (what affine graphs and refits take)."""
        return {f"{s}.weight": self.raw_weight(s) for s in slots}

    def tensor_bytes(self, name: str) -> int:
        """Bytes of one stored tensor (0 when the store does not hold it)."""
        t = self._index.get(name)
        return int(t["length"]) if t is not None else 0

    def nbytes(self, names: Iterable[str], raw_slots: Iterable[str] = ()) -> int:
        """Bytes held for the union of stored ``names`` and derived raw weights of ``raw_slots``,
        each counted once."""
        total = sum(self.tensor_bytes(n) for n in set(names))
        return total + sum(self.tensor_bytes(f"{s}.conv.weight") for s in set(raw_slots))
