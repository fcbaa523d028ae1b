"""The contract every inference backend implements: :class:`Backend`, :class:`Engine`, :class:`EngineRequest`.

A backend turns one topology graph (ONNX) into an *engine* for a device profile, loads it,
binds a preference's weights into it, runs batches and reports memory. ONNX Runtime (CPU)
is the default and works everywhere; TensorRT is an optional extra, imported lazily.

Capabilities live in the class (the habit of Polygraphy's ``BaseRunner``), so callers never
ask which backend they hold:

* ``binds_in_place``: the engine's ``bind`` mutates it (TensorRT refit, one shared scratch
  buffer and stream): the caller serializes binds, runs, loads and closes. Otherwise
  ``prepare(weights)`` returns an immutable bound object and runs may overlap.
* ``needs_raw_weights``: ``load``/``compile`` need the raw conv weights of the topology's
  modulated slots (``EngineRequest.raw_weights``; ONNX Runtime's ``affine`` binding).
* ``can_cache(profile)``: whether compiled engines for ``profile`` may be written into the
  bundle (``compile``) and loaded back.
* ``check_bundle(root, manifest, profile)``: refuse, when a bundle is opened, what this
  backend cannot run (a precision without calibrated graphs...), with the fix.
* ``binding_modes`` / ``binding``: the binding modes a backend offers (its constructor
  takes ``binding=``; empty when it has only one) and the one an instance uses.
* ``builds_ahead``: ``dymu-rt build`` compiles every topology's engine into the bundle
  (TensorRT); otherwise engines are made (and cached) on first use.
* ``needs_profile``: building for it needs an explicit device profile.
* ``check_available()``: fail fast (BackendUnavailable, one line) unless the backend's
  libraries and device are usable here.

Engines say which weights they take (``weight_kind``): ``"folded"`` (``<slot>.conv.weight``
and ``<slot>.conv.bias``) or ``"affine"`` (``<slot>.scale`` and ``<slot>.shift``);
:mod:`dymu_rt.runtime.binding` computes both.

Two tiers per preference (docs/runtime-tiers.md). A switch must be instant, and the
preference must then run at the speed of its fully optimized folded graph; no single engine
does both, so the contract has two tiers, and ``second_tier`` says how a backend reaches
the second one:

* the **instant tier** is what ``load`` returns: one engine per topology that serves every
  preference (``prepare``/``bind`` of that preference's weights: ONNX Runtime's ``affine``
  binding feeds BN scale/shift as inputs and holds the weights once). A switch costs a bind.
* ``second_tier = "build"``: ``folds(profile)`` says whether the backend can build, for
  one preference, a **folded** engine (``load_folded(request, weights)`` with the
  preference's folded weights ``<slot>.conv.weight``/``.conv.bias``): its own weights
  baked in, fully optimized and prepacked, ``tier = "folded"``; ``prepare`` then ignores
  its argument (the weights are the engine's), ``bind`` refuses. The Runtime builds it in a
  background worker after a switch and swaps it in atomically (or synchronously, or never:
  ``Runtime.open(second_tier=...)`` / the profile's ``[runtime] second_tier``); folded
  engines are cached in the engine LRU, costing their ``memory_bytes()``. A backend whose
  instant engines are already folded for one binding mode (ONNX Runtime ``session``) says
  ``folds() == False`` for it. An OpenVINO backend with an affine (BN-as-inputs) mode and a
  folded mode gets both tiers by implementing ``folds``/``load_folded`` alike.
* ``second_tier = "refit"``: the engine is folded itself and refitted in place with a
  preference's folded weights (``binds_in_place``: TensorRT); the refit, done on the first
  run after a switch under the Runtime's serial lock, *is* the second tier: nothing is
  built in the background.
* ``second_tier = None``: one tier only.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class EngineRequest:
    """Everything a backend needs to compile or load the engine of one topology.

    ``graph``: the bundle's FP32 topology graph. ``artifact``: a compiled engine file to
    load (``None``: build from ``graph``), with its recorded ``artifact_sha256`` (checked by
    backends that hash their artifacts). ``slots``: the topology's modulated BN slots;
    ``raw_weights``: their raw conv weights (for backends with ``needs_raw_weights``).
    ``bundle`` / ``manifest``: the bundle the graph belongs to, for sections a backend
    reads (the ``int8`` Q/DQ graphs). ``timing_cache``: a TensorRT timing cache to use
    when building in memory.
    """

    graph: Path
    profile: Any
    topology: str
    slots: Sequence[str] = ()
    raw_weights: Optional[Mapping[str, np.ndarray]] = None
    artifact: Optional[Path] = None
    artifact_sha256: Optional[str] = None
    bundle: Optional[Path] = None
    manifest: Any = None
    timing_cache: Optional[Path] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the bundle's one host copy of its weights (:class:`dymu_rt.bundle.weight_pool.WeightPool`),
    #: shared by every engine of a runtime (backends with ``shares_weights`` use it)
    pool: Any = None

    @property
    def bundle_root(self) -> Path:
        """The bundle folder: given, or the graph's (``BUNDLE/graphs/<topology>.onnx``)."""
        return Path(self.bundle) if self.bundle is not None else Path(self.graph).parent.parent


class Engine(abc.ABC):
    """A loaded, runnable topology."""

    topology: str
    #: which weights ``bind``/``prepare`` take: "folded" or "affine" (module docstring)
    weight_kind: str = "folded"
    #: the binding mode this engine uses, when the backend has several (reported by stats)
    mode: Optional[str] = None
    #: "instant" (serves every preference of its topology) or "folded" (one preference's
    #: weights baked in: :meth:`Backend.load_folded`)
    tier: str = "instant"

    def prepare(self, weights: Mapping[str, np.ndarray]) -> Any:
        """What ``run(images, bound)`` needs to run at ``weights``. Engines that bind in place
        return the weights themselves: the caller binds them (serialized) before a run."""
        return weights

    @abc.abstractmethod
    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the named weights in place with another preference's."""

    @abc.abstractmethod
    def run(self, images: np.ndarray, bound: Any = None) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch; returns task name -> raw output (NCHW or NC)."""

    @abc.abstractmethod
    def memory_bytes(self) -> int:
        """Approximate resident memory of this engine (weights + workspace)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine's resources."""


class Backend(abc.ABC):
    """Factory of engines for one backend kind (see the module docstring for capabilities)."""

    name: ClassVar[str]
    binds_in_place: ClassVar[bool] = False
    needs_raw_weights: ClassVar[bool] = False
    builds_ahead: ClassVar[bool] = False
    needs_profile: ClassVar[bool] = False
    binding_modes: ClassVar[tuple[str, ...]] = ()
    binding: Optional[str] = None
    #: how the folded engine of one preference is reached: "build" (``load_folded``),
    #: "refit" (in place, ``binds_in_place``) or None (module docstring)
    second_tier: ClassVar[Optional[str]] = None

    def folds(self, profile) -> bool:
        """Whether ``load_folded`` builds a second-tier engine for ``profile`` (``second_tier
        == "build"`` and the instant engines of this instance are not folded already)."""
        return False

    def load_folded(self, request: EngineRequest, weights: Mapping[str, np.ndarray]) -> Engine:
        """The folded engine of one preference: ``weights`` are its folded
        ``<slot>.conv.weight``/``.conv.bias`` for ``request.slots``; the engine holds its own
        weights, is fully optimized and has ``tier == "folded"`` (module docstring)."""
        raise NotImplementedError(f"backend {self.name} builds no folded second-tier engine")

    @classmethod
    def check_available(cls) -> None:
        """Raise BackendUnavailable (one line) unless this backend can run here."""

    def shares(self, pool) -> bool:
        """Whether this backend's engines read the bundle's one host copy of the weights
        (``EngineRequest.pool``) instead of holding their own (no disk cache then)."""
        return False

    def can_cache(self, profile) -> bool:
        """Whether compiled engines for ``profile`` are written into a bundle and reused."""
        return True

    def check_bundle(self, root: Path, manifest, profile) -> None:
        """Refuse at open time what this backend cannot run from bundle ``root``."""

    @abc.abstractmethod
    def device_facts(self) -> dict:
        """Facts an engine is tied to (backend version, device, ISA...). Stored with compiled
        engines; a mismatch on load is refused."""

    @abc.abstractmethod
    def compile(self, request: EngineRequest, out_dir: Path) -> dict:
        """Build the engine artifact of ``request`` under ``out_dir`` (atomic); returns a
        JSON-able record ``{file, sha256, ...}`` with ``file`` relative to ``out_dir``."""

    @abc.abstractmethod
    def load(self, request: EngineRequest) -> Engine:
        """Load the engine of ``request`` (its artifact if any, else built from the graph)."""
