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
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import numpy as np

from dymu_rt.core.errors import BundleError

#: |s0| below this is treated as a lost channel (raw weight must come from fold_params).
MIN_SCALE = 1e-30


def load_fold_params(path: Path) -> dict[str, np.ndarray]:
    """The bundle's ``fold_params.safetensors`` as float32 numpy arrays (no pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return {k: np.asarray(v, np.float32) for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path}: cannot read fold parameters ({e}); rebuild the bundle") from None


def bundle_fold_params(root: Path, manifest) -> "FoldParams":
    """A bundle's fold parameters as the binding formulas read them (raw conv weights derived
    from ``graphs/weights.bin`` where fold_params does not store them): for tools that bind
    weights outside a Runtime (exporters, benchmarks). ``manifest`` is the typed Manifest."""
    ctrl = manifest.controller
    stored = load_fold_params(Path(root) / ctrl["fold_params"].file) if "fold_params" in ctrl else {}
    return WeightPool(Path(root), manifest.weights, stored, manifest.bn_eps).fold_params()


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

    def __init__(self, root: Path, weights: Optional[Mapping], fold: Mapping[str, np.ndarray], eps: float) -> None:
        """``weights``: the manifest's ``weights`` section (None for a bundle whose graphs hold
        their own weights: raw conv weights must then be in ``fold``)."""
        self.root = Path(root)
        self._index = dict(weights["tensors"]) if weights else {}
        self._fold = fold
        self._eps = float(eps)
        self._file = None
        if weights:
            path = self.root / weights["file"]
            try:
                self._file = np.memmap(path, dtype=np.uint8, mode="r")
            except (OSError, ValueError) as e:
                raise BundleError(f"bundle {root}: cannot map the weights file {path} ({e}); rebuild the bundle") \
                    from None
        self._raw: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        #: per-backend views of the pool's arrays, made once and shared by every engine
        #: (ONNX Runtime: one OrtValue per tensor, :mod:`dymu_rt.backends.ort_sharing`)
        self.views: dict[str, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._index

    @property
    def has_store(self) -> bool:
        """Whether the bundle has a shared weights file (schema 2+ builds; not hand-made graphs)."""
        return self._file is not None

    def fold_params(self) -> "FoldParams":
        """``fold_params`` as the binding formulas read it, ``<slot>.weight`` included (derived)."""
        return FoldParams(self)

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

    def array(self, name: str, raw_suffix: str = ".conv.raw_weight") -> np.ndarray:
        """A stored tensor by name, or the derived raw weight of ``<slot><raw_suffix>``."""
        if name.endswith(raw_suffix):
            return self.raw_weight(name[: -len(raw_suffix)])
        return self.tensor(name)

    def array_bytes(self, name: str, raw_suffix: str = ".conv.raw_weight") -> int:
        """Bytes of :meth:`array` ``name`` (without deriving it)."""
        if name.endswith(raw_suffix):
            return self.tensor_bytes(name[: -len(raw_suffix)] + ".conv.weight")
        return self.tensor_bytes(name)

    def tensor_bytes(self, name: str) -> int:
        """Bytes of one stored tensor (0 when the store does not hold it)."""
        t = self._index.get(name)
        return int(t["length"]) if t is not None else 0

    def nbytes(self, names: Iterable[str], raw_slots: Iterable[str] = ()) -> int:
        """Bytes held for the union of stored ``names`` and derived raw weights of ``raw_slots``,
        each counted once."""
        total = sum(self.tensor_bytes(n) for n in set(names))
        return total + sum(self.tensor_bytes(f"{s}.conv.weight") for s in set(raw_slots))


class FoldParams(MappingABC):
    """A bundle's ``fold_params`` with each slot's raw conv weight ``<slot>.weight`` served by
    the pool (derived once) when the file does not store it: what
    :func:`dymu_rt.core.bn_fold.slot_weights` reads, without a second stored copy."""

    def __init__(self, pool: WeightPool) -> None:
        self._pool = pool
        self._stored = pool._fold
        slots = {k[: -len(".bn_weight")] for k in self._stored if k.endswith(".bn_weight")}
        self._derived = {f"{s}.weight" for s in slots if f"{s}.weight" not in self._stored}

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._stored:
            return self._stored[key]
        if key in self._derived:
            return self._pool.raw_weight(key[: -len(".weight")])
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._stored
        yield from sorted(self._derived)

    def __len__(self) -> int:
        return len(self._stored) + len(self._derived)

    def __contains__(self, key) -> bool:
        return key in self._stored or key in self._derived
