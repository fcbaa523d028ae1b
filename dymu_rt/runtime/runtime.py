"""The Runtime: a bundle's engines, switched per preference (r, c), run on images.

    rt = Runtime.open("runs/synth-nyu/bundle")          # validates the bundle
    rt.set_preference([0.6, 0.2, 0.2], 0.5)             # exact tree + weights, or nearest grid point
    outputs = rt.infer(images)                           # task name -> raw output [B, C, H, W]
    rt.stats()                                           # topology, GFLOPs, latency, binding, cache

How a preference becomes an engine (DESIGN.md §2): the edge hypernet gives the exact tree
for (r, c). If the bundle has that topology, its engine runs with the weight hypernet's
exact BN deltas for (r, c) (``binding = "exact"``). Otherwise the runtime falls back to the
nearest grid point (metric: :func:`dymu_rt.core.preference.preference_distance`, L1 on
r plus |Δc|) and uses that point's topology *and* that point's weights — the deltas the
controller was trained to pair with that tree — and says so (``"nearest-grid"`` plus the
point in ``stats()["grid_point"]``).

The backend comes from the device profile (``backend`` key; ``Runtime.open(backend=...)``
may only repeat it): ``--profile jetson-orin-nano`` runs TensorRT.

Engines live in an LRU (:class:`~dymu_rt.runtime.cache.EngineCache`) bounded by the
profile's ``engine_cache_mb``, counting each engine's ``memory_bytes()`` (ONNX Runtime: the
weights its graph references, see :func:`dymu_rt.backends.onnxruntime.graph_weight_bytes`).
The engine of the current preference is never evicted.

Two tiers per preference (docs/runtime-tiers.md; the backend contract in
:mod:`dymu_rt.backends.base`). ``set_preference`` returns on the *instant* tier: the
topology's engine serving every preference (ONNX Runtime ``affine``: BN scale/shift as
inputs, weights held once). With ``second_tier = "background"`` (default; ``Runtime.open``
or the profile's ``[runtime] second_tier``) one worker thread then builds the preference's
*folded* engine (``Backend.load_folded``: its own weights, fully optimized) and swaps it in
with one assignment, provided the preference is still the current one; a newer switch
replaces a queued build and discards one in flight. ``"sync"`` builds it inside
``set_preference``; ``"off"`` never. Folded engines are cached in the engine LRU (key
``<topology>@folded(<r>, <c>)``, at most the profile's ``[memory] folded_engines``), so a
switch back lands on its folded engine at once. ``stats()["tier"]`` says which tier serves;
``timed_call`` and ``profile_topologies`` time the steady state and record its tier.
The selection itself (exact tree or nearest grid point) is :mod:`dymu_rt.core.selector`'s.

Thread safety: a preference is bound into an immutable state (engine + bound weights) that
``set_preference`` swaps in with one assignment; ``infer`` reads that state once, so
concurrent ``infer`` and ``set_preference`` calls never mix two preferences in one result.
ONNX Runtime engines get the weights with each run (``prepare``), so runs proceed in
parallel. Engines that bind in place (TensorRT: refit, one shared scratch buffer and
stream) run under ``_serial_lock``, which also covers their loads and evictions (a load
can grow and re-point the shared scratch; an eviction frees an engine); they are refitted
only when the preference bound into them changes.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from dymu_rt.backends.base import Backend, EngineRequest
from dymu_rt.backends.devices import SECOND_TIER_MODES, load_profile
from dymu_rt.backends.registry import backend_class, check_name, get_backend, with_binding_modes
from dymu_rt.bundle import sections as S
from dymu_rt.bundle.latency_cache import store as store_latency
from dymu_rt.bundle.latency_cache import with_cached_latency
from dymu_rt.bundle.layout import CONTROLLER_FILES, is_shipped_bundle
from dymu_rt.bundle.manifest import Manifest
from dymu_rt.bundle.paths import inside
from dymu_rt.bundle.weight_pool import WeightPool
from dymu_rt.core.preference import Preference, make_preference
from dymu_rt.core.selector import Selector, static_refusal
from dymu_rt.core.errors import BundleError, ValidationError
from dymu_rt.runtime.binding import affine_plan, load_fold_params, raw_weights, slot_weights
from dymu_rt.runtime.cache import FOLDED_MARK, EngineCache
from dymu_rt.runtime.controller import Controller
from dymu_rt.runtime.latency import LatencyWindow, choose_for_budget, measured_with, time_engine
from dymu_rt.runtime.preprocess import check_input_size, preprocess

#: Largest input batch ``profile_topologies`` allocates (float32 NCHW).
MAX_BATCH_BYTES = 2**30
#: Topologies whose vectorized affine binding (:func:`~dymu_rt.runtime.binding.affine_plan`,
#: ~0.7 MB each at pascal3) is kept between switches.
MAX_AFFINE_PLANS = 8


@dataclasses.dataclass(frozen=True)
class _State:
    """Everything one inference needs, swapped atomically by set_preference."""

    r: tuple[float, ...]
    c: float
    topology: str
    engine: Any
    bound: Any
    binding: str                      # "exact" | "nearest-grid"
    grid_point: Optional[dict]
    key: tuple = ()                   # which weights ``bound`` holds: (topology, r, c) they came from
    tier: str = "instant"             # "instant" | "folded" | "refit" (module docstring)
    generation: int = 0               # the set_preference call this state belongs to
    deltas: Any = None                # the BN deltas bound (the second tier folds them)


class Runtime:
    """Preference-switched inference over a bundle (see the module docstring)."""

    def __init__(self, root: Path, manifest: Manifest, backend: Backend, profile, cache_engines: bool,
                 second_tier: Optional[str] = None) -> None:
        self.root = Path(root)
        self.read_only = False            # True for the shipped default bundle (package data)
        self.manifest = manifest
        self.backend = backend
        self.profile = profile
        self.tasks = manifest.tasks
        self.task_names = manifest.task_names
        self.n_tasks = manifest.n_tasks
        self.preprocessing = manifest.preprocessing
        self._cache_engines = cache_engines
        # A static bundle (AdaShare / DAG: dymu_rt.compile.build, StaticLowering) has one topology and no
        # controller: nothing to switch, nothing to bind.
        self.static: Optional[Mapping[str, Any]] = manifest.static
        ctrl = manifest.controller
        if self.static:
            self.controller, self.pool, self._params = None, None, {}
        else:
            missing = [k for k in CONTROLLER_FILES if k not in manifest.controller]
            if missing:
                raise BundleError(f"bundle {root}: manifest 'controller' lacks {missing}; rebuild the bundle")
            self.controller = Controller(self.root / ctrl["edge_hypernet"].file,
                                         self.root / ctrl["weight_hypernet"].file, manifest.num_layers,
                                         self.n_tasks, manifest.bn_delta_size, manifest.topology_salt)
            # Store once, hold once: the weights file is mapped once and shared by every engine;
            # raw conv weights are derived from it (bundle/weight_pool.py), not stored twice.
            self.pool = WeightPool(self.root, manifest.weights,
                                   load_fold_params(self.root / ctrl["fold_params"].file), manifest.bn_eps)
            self._params = self.pool.fold_params()
        self._cache_engines = cache_engines and not backend.shares(self.pool)
        self._engine_files: dict[str, dict] = dict(
            (S.check_engines(self.root, manifest, backend, profile.name) or {}).get("files", {}))
        self._in_place = backend.binds_in_place
        self._state: Optional[_State] = None
        self._switch_lock = threading.Lock()
        # Engines that bind in place: runs, binds, loads and evictions.
        self._serial_lock = threading.RLock()
        self._bound_keys: dict[str, tuple[Any, tuple]] = {}    # topology -> (engine, key bound in it)
        self._plans: dict[str, Any] = {}        # topology -> its AffinePlan (binding.affine_plan)
        self._plans_lock = threading.Lock()
        self.cache = EngineCache(profile.engine_cache_mb * 2**20, self._load_engine, pinned=self._pinned,
                                 max_folded=getattr(profile, "folded_engines", None))
        self.latency = LatencyWindow()
        #: where the last profile_topologies stored its table (the manifest or the user cache)
        self.latency_store: Optional[str] = None
        self.selector = None if self.static else Selector.from_manifest(manifest)
        # The second tier (module docstring): folded engines built per preference.
        mode = second_tier if second_tier is not None else getattr(profile, "second_tier", "background")
        if mode not in SECOND_TIER_MODES:
            raise ValidationError(f"second tier {mode!r} is unknown; expected one of {', '.join(SECOND_TIER_MODES)}")
        # A static bundle's instant engine is already its one folded graph, fully optimized.
        self.second_tier = mode if backend.folds(profile) and not self.static else "off"
        self._generation = 0
        self._tier_cv = threading.Condition()
        self._job: Optional[_State] = None          # the newest instant state awaiting its folded engine
        self._building: Optional[int] = None        # generation of the build in flight
        self._worker: Optional[threading.Thread] = None
        self._closed = False
        self.tier_log: list[dict] = []              # recent second-tier events (bounded)
        self._switched_at = 0.0

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, bundle_dir, backend: Optional[str] = None, profile: str = "x86-64-cpu",
             binding: Optional[str] = None, cache_engines: Optional[bool] = None,
             rebuild_engines: bool = False, second_tier: Optional[str] = None) -> "Runtime":
        """Open and validate a bundle on device ``profile`` (name or TOML path).

        The backend is the profile's ``backend`` key; ``backend``, when given, must agree.
        ``binding`` picks the binding mode of a backend that has several (ONNX Runtime:
        default ``affine``; see :mod:`dymu_rt.backends.onnxruntime`). ``cache_engines`` writes
        compiled engines (ORT optimized graphs, TensorRT engines) into the bundle (default:
        when the bundle folder is writable and not the shipped one). ``rebuild_engines``
        discards engines recorded for this backend/profile first (refused for the shipped bundle).
        ``second_tier``: "background" (default), "sync" or "off" (module docstring; default:
        the profile's ``[runtime] second_tier``).
        """
        if second_tier is not None and second_tier not in SECOND_TIER_MODES:
            raise ValidationError(f"second tier {second_tier!r} is unknown; expected one of "
                                  f"{', '.join(SECOND_TIER_MODES)}")
        root = Path(bundle_dir)
        if backend is not None:
            check_name(backend)                         # unknown backend: one line, with the choices
        prof = load_profile(profile)
        name = backend or prof.backend
        if prof.backend != name:
            raise ValidationError(f"profile '{prof.name}' is for backend '{prof.backend}', not '{name}'")
        shipped = is_shipped_bundle(root)
        if rebuild_engines and shipped:
            raise ValidationError(f"--rebuild-engines: the shipped default bundle ({root}) is read-only package "
                                  f"data; copy it first (cp -r {root} my-bundle) and pass --bundle my-bundle")
        be = _make_backend(name, prof, binding)
        if rebuild_engines and (root / "manifest.json").is_file():
            # Checked first: a linked engines folder must not send the removal elsewhere.
            target = inside(root, S.engines_dir(name, prof.name), "engines folder", must_exist=False)
            S.update_manifest(root, lambda doc: S.drop_engines(doc, name, prof.name))
            shutil.rmtree(target, ignore_errors=True)
        manifest = S.open_manifest(root)
        check_input_shape(prof, manifest, root)
        be.check_bundle(root, manifest, prof)           # e.g. a precision this backend cannot run here
        if cache_engines is None:
            # The shipped default bundle is package data: never write into it.
            cache_engines = os.access(root, os.W_OK) and not shipped
        # A bundle that cannot be written keeps its latency tables in the per-user cache.
        read_only = shipped or not os.access(root, os.W_OK) or not os.access(root / "manifest.json", os.W_OK)
        if read_only:
            manifest = with_cached_latency(manifest)
        rt = cls(root, manifest, be, prof, bool(cache_engines) and be.can_cache(prof), second_tier=second_tier)
        rt.read_only = read_only
        return rt

    # -- engines ---------------------------------------------------------------------------

    def _request(self, topology: str, entry: Optional[dict] = None) -> EngineRequest:
        topo = self.manifest.topologies[topology]
        raw = raw_weights(self._params, topo.bn_slots) if self.backend.needs_raw_weights else None
        return EngineRequest(
            self.root / topo.file, self.profile, topology, slots=topo.bn_slots, raw_weights=raw, pool=self.pool,
            artifact=None if entry is None else self.root / entry["file"],
            artifact_sha256=None if entry is None else entry.get("sha256"),
            bundle=self.root, manifest=self.manifest)

    def _load_engine(self, topology: str):
        # The recorded compiled engine (checked by the backend), else compile it into the
        # bundle and record it (when allowed), else the backend builds it in memory.
        entry = self._engine_files.get(topology)
        if entry is None and self._cache_engines:
            entry = self._compile(topology)
        return self.backend.load(self._request(topology, entry))

    def _compile(self, topology: str) -> Optional[dict]:
        """Write the topology's compiled engine into the bundle and record it (best effort:
        a read-only bundle just runs without the disk cache)."""
        rel_dir = S.engines_dir(self.backend.name, self.profile.name)
        target = inside(self.root, rel_dir, "engines folder", must_exist=False)     # no links on the way
        try:
            rec = self.backend.compile(self._request(topology), target)
        except OSError:
            self._cache_engines = False
            return None
        entry = {"file": f"{rel_dir}/{rec['file']}", "sha256": rec["sha256"]}
        facts = self.backend.device_facts()
        self.manifest = S.update_manifest(self.root, lambda doc: S.record_engine(
            doc, self.backend.name, self.profile.name, facts, topology, entry, self.backend.binding))
        self._engine_files[topology] = entry
        return entry

    def _guard(self):
        """The lock that serializes loads/evictions with runs, for engines that bind in place."""
        return self._serial_lock if self._in_place else contextlib.nullcontext()

    def _weights(self, engine, topology: str, deltas: np.ndarray) -> dict[str, np.ndarray]:
        if engine.weight_kind == "affine":
            return self._affine_plan(topology)(deltas)
        return slot_weights(self._params, self.manifest.bn_layout, deltas, self.manifest.bn_eps,
                            self.manifest.topologies[topology].bn_slots, engine.weight_kind)

    def _affine_plan(self, topology: str):
        """The topology's vectorized affine binding (built once; the last few kept)."""
        with self._plans_lock:
            plan = self._plans.pop(topology, None)
            if plan is None:
                plan = affine_plan(self._params, self.manifest.bn_layout, self.manifest.bn_eps,
                                   self.manifest.topologies[topology].bn_slots)
            self._plans[topology] = plan                    # most recent last
            while len(self._plans) > MAX_AFFINE_PLANS:
                self._plans.pop(next(iter(self._plans)))
            return plan

    def _bind(self, engine, topology: str, deltas: np.ndarray):
        weights = self._weights(engine, topology, deltas)
        if self._in_place:
            return weights                      # bound in place at run time, serialized
        return engine.prepare(weights)

    # -- preference --------------------------------------------------------------------------

    def set_preference(self, r, c, normalize: bool = False) -> dict[str, Any]:
        """Switch to preference (r, c) (validated); returns what ``stats()`` reports about it.

        Returns at once on the instant tier (or on the preference's cached folded engine);
        with the second tier "background" a worker then builds the folded engine and swaps it
        in; with "sync" it is built here before returning."""
        if self.static:
            return self._set_static(r, c, normalize)
        pref = make_preference(r, c, self.n_tasks, normalize=normalize)
        with self._switch_lock:
            tid, _ = self.controller.topology(pref.r, pref.c)
            sel = self.selector.select(pref, tid)
            w = sel.weights_at
            deltas = self.controller.deltas(w.r, w.c)
            grid_point = None if sel.grid_point is None else {"r": list(sel.grid_point.r), "c": sel.grid_point.c}
            self._install(tuple(pref.r), float(pref.c), sel.topology, deltas, sel.binding, grid_point, sel.key)
        return {"topology": sel.topology, "binding": sel.binding, "grid_point": grid_point}

    def _install(self, r, c, tid: str, deltas: np.ndarray, binding: str, grid_point, key: tuple) -> None:
        """Make (tid bound at ``deltas``) the current state: its cached folded engine, else the
        instant engine plus a second-tier build. Call under ``_switch_lock``."""
        self._generation += 1
        gen = self._generation
        self._switched_at = time.perf_counter()
        folded = self.cache.lookup(_folded_key(key)) if self.second_tier != "off" else None
        if folded is not None:
            state = _State(r, c, tid, folded, folded.prepare({}), binding, grid_point, key, "folded", gen, deltas)
        else:
            with self._guard():
                engine = self.cache.get(tid)
            tier = "refit" if self._in_place else "instant"
            state = _State(r, c, tid, engine, self._bind(engine, tid, deltas), binding, grid_point, key, tier, gen,
                           deltas)
        if state.tier == "instant" and self.second_tier == "sync":
            state = self._folded_state(state)
        self._state = state
        self.latency.clear()
        if state.tier == "folded":
            self.cache.trim()                 # the previous preference's engines are unpinned now
        if state.tier == "instant" and self.second_tier == "background":
            self._submit(state)
        else:
            with self._tier_cv:
                self._job = None
                self._tier_cv.notify_all()

    # -- the second tier ----------------------------------------------------------------------

    def _folded_state(self, state: _State) -> _State:
        """``state`` on its folded engine, built now and cached (call under ``_switch_lock``)."""
        engine = self._build_folded(state)
        self.cache.put(_folded_key(state.key), engine)
        return dataclasses.replace(state, engine=engine, bound=engine.prepare({}), tier="folded")

    def _build_folded(self, state: _State):
        weights = slot_weights(self._params, self.manifest.bn_layout, state.deltas, self.manifest.bn_eps,
                               self.manifest.topologies[state.topology].bn_slots, "folded")
        return self.backend.load_folded(self._request(state.topology), weights)

    def _submit(self, state: _State) -> None:
        """Hand ``state`` to the background worker (replacing, i.e. cancelling, a queued build)."""
        with self._tier_cv:
            self._job = state
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="dymu-rt-second-tier", daemon=True)
                self._worker.start()
                _WITH_WORKERS.add(self)
            self._tier_cv.notify_all()

    def _work(self) -> None:
        """The background worker: builds the newest job's folded engine; swaps it in when its
        preference is still the current one, else discards it (a newer switch cancelled it)."""
        while True:
            with self._tier_cv:
                while self._job is None and not self._closed:
                    self._tier_cv.wait()
                if self._closed:
                    return
                job, self._job = self._job, None
                self._building = job.generation
            event: dict[str, Any] = {"generation": job.generation, "topology": job.topology}
            engine = None
            try:
                if job.generation == self._generation:           # else: a newer switch cancelled it
                    t0 = time.perf_counter()
                    engine = self._build_folded(job)
                    event["build_ms"] = 1e3 * (time.perf_counter() - t0)
                with self._switch_lock:
                    current = self._state
                    if engine is not None and current is not None and current.generation == job.generation \
                            and not self._closed:
                        self.cache.put(_folded_key(job.key), engine)
                        self._state = dataclasses.replace(current, engine=engine, bound=engine.prepare({}),
                                                          tier="folded")
                        self.cache.trim()
                        event["swapped"] = True
                        event["after_switch_ms"] = 1e3 * (time.perf_counter() - self._switched_at)
                    else:
                        event["swapped"] = False                  # stale or cancelled: discarded
                        if engine is not None:
                            engine.close()
            except Exception as e:       # the instant tier keeps serving; stats() reports it
                event["error"] = f"{type(e).__name__}: {e}"
            with self._tier_cv:
                self._building = None
                self.tier_log = (self.tier_log + [event])[-64:]
                self._tier_cv.notify_all()

    def wait_folded(self, timeout: Optional[float] = None) -> bool:
        """Wait until the current preference runs on its folded engine (True), or until no
        build for it is pending any more (False: the second tier is off or failed, or the
        backend has none) or ``timeout`` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._tier_cv:
            while True:
                s = self._state
                if s is None or s.tier != "instant":
                    return s is not None and s.tier == "folded"
                pending = (self._job is not None and self._job.generation == s.generation) or \
                    self._building == s.generation
                if not pending:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._tier_cv.wait(timeout=left)

    def _pinned(self) -> tuple:
        s = self._state
        return () if s is None else (s.topology, _folded_key(s.key))

    def _set_static(self, r, c, normalize: bool) -> dict[str, Any]:
        """A static bundle's one architecture: r is validated and ignored, c refused."""
        if c is not None:
            raise static_refusal(self.root, self.static.get("method"), f"so c = {c} cannot be honoured; omit c")
        r = tuple(make_preference(r, 0.0, self.n_tasks, normalize=normalize).r) if r is not None else \
            tuple([1.0 / self.n_tasks] * self.n_tasks)
        tid = next(iter(self.manifest.topologies))
        with self._switch_lock:
            self._install(r, None, tid, np.zeros(0, np.float32), "static", None, (tid,))
        return {"topology": tid, "binding": "static", "grid_point": None}

    def choose_for_budget(self, r, budget_ms: float, normalize: bool = False,
                          percentile: str = "p50", frames: int = 1) -> dict[str, Any]:
        """The smallest grid c for ``r`` whose topology's measured latency (``percentile``, plus
        the switch cost) fits ``budget_ms`` (see :func:`dymu_rt.runtime.latency.choose_for_budget`)."""
        if self.static:
            raise static_refusal(self.root, self.static.get("method"),
                                 "so there is no c to choose for a latency budget; run it without --latency-budget")
        state = self._state
        return choose_for_budget(self.manifest, self.profile.name, r, budget_ms, self.n_tasks, normalize,
                                 percentile=percentile, current=None if state is None else state.topology,
                                 cached=self.cache.topologies(), frames=frames,
                                 profile_command=self._profile_command())

    def _profile_command(self) -> str:
        """The `dymu-rt profile` command that times this bundle on this profile."""
        where = "" if is_shipped_bundle(self.root) else f" --bundle {self.root}"
        prof = "" if self.profile.name == "x86-64-cpu" else f" --profile {self.profile.name}"
        return f"dymu-rt profile{where}{prof}"

    # -- inference ----------------------------------------------------------------------------

    def preprocess(self, images: Sequence) -> np.ndarray:
        """PIL images or paths -> the float32 NCHW batch the graphs expect."""
        return preprocess(images, self.preprocessing)

    def _check_batch(self, x) -> np.ndarray:
        h, w = self.manifest.input_size
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != (3, h, w) or x.shape[0] < 1:
            raise ValidationError(f"images have shape {tuple(x.shape)}; expected a float32 batch "
                                  f"[B, 3, {h}, {w}] (or a list of PIL images / paths)")
        return np.ascontiguousarray(x, dtype=np.float32)

    def infer(self, images) -> dict[str, np.ndarray]:
        """Run a batch: float32 NCHW preprocessed array, or a list of PIL images / paths.

        Returns task name -> raw output with a batch dimension. Batches larger than the
        profile's ``batch_max`` run in chunks.
        """
        if self._state is None:
            raise ValidationError("no preference set; call set_preference(r, c) first")
        x = self._check_batch(images) if isinstance(images, np.ndarray) else self.preprocess(images)
        t0 = time.perf_counter()
        step = max(1, self.profile.batch_max)
        if self._in_place:
            # Read the state under the lock that evictions take: its engine is then alive
            # (only the current state's engine is pinned; an older state's may be closed).
            with self._serial_lock:
                state = self._state
                if state is None:
                    raise ValidationError("no preference set; call set_preference(r, c) first")
                parts = [self._run(state, x[i:i + step]) for i in range(0, len(x), step)]
        else:
            state = self._state                 # one read: this call's preference
            if state is None:
                raise ValidationError("no preference set; call set_preference(r, c) first")
            parts = [self._run(state, x[i:i + step]) for i in range(0, len(x), step)]
        self.latency.add(1e3 * (time.perf_counter() - t0))
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run(self, state: _State, x: np.ndarray) -> dict[str, np.ndarray]:
        if not self._in_place:
            return state.engine.run(x, state.bound)
        with self._serial_lock:
            # Refit only when another preference's weights are bound in this engine.
            current = self._bound_keys.get(state.topology)
            if current is None or current[0] is not state.engine or current[1] != state.key or not state.key:
                self._bound_keys.pop(state.topology, None)      # a failed bind leaves it unknown
                state.engine.bind(state.bound)
                self._bound_keys[state.topology] = (state.engine, state.key)
            return state.engine.run(x)

    # -- reporting ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Current topology and its cost, binding, recent latency and engine-cache counters."""
        s = self._state
        mode = self.backend.binding
        if s is not None and s.engine.mode is not None:
            mode = s.engine.mode    # the engine's own: INT8 (Q/DQ) engines bind a session per preference
        out: dict[str, Any] = {"backend": self.backend.name, "profile": self.profile.name,
                               "precision": self.profile.precision, "binding_mode": mode,
                               "latency_ms": self.latency.summary(), "cache": self.cache.stats(),
                               "second_tier": self.second_tier}
        errors = [e["error"] for e in self.tier_log if "error" in e]
        if errors:
            out["second_tier_error"] = errors[-1]
        if s is not None:
            topo = self.manifest.topologies[s.topology]
            out.update({"topology": s.topology, "r": list(s.r), "c": s.c, "binding": s.binding,
                        "grid_point": s.grid_point, "parents": [list(row) for row in topo.parents],
                        "tier": s.tier, "params": topo.params, "macs": topo.macs, "gmacs": topo.gmacs,
                        "gflops": topo.gflops,
                        # the paper's "GFLOPs" (fvcore convention); None in older bundles
                        "gflops_paper": topo.gflops_paper})
        return out

    # -- profiling -----------------------------------------------------------------------------

    def profile_topologies(self, iters: int = 50, warmup: int = 10, batch: int = 1,
                           on_topology: Optional[Callable[[str, dict], None]] = None) -> dict[str, dict]:
        """Time every topology (at its first grid point's weights) on this device and store
        ``latency[profile]`` in the manifest; returns topology id -> {p50_ms, p90_ms, p99_ms,
        batch, iters}. The current preference is left as it was. A read-only bundle (the
        shipped one) keeps the table in the per-user cache (:mod:`dymu_rt.bundle.latency_cache`);
        :attr:`latency_store` says where it went."""
        for name, v, lo in (("iters", iters, 1), ("warmup", warmup, 0), ("batch", batch, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValidationError(f"--{name} = {v!r}; expected an integer >= {lo}")
        h, w = check_input_size(self.preprocessing)
        # Engines are built for batches up to the profile's batch_max (a TensorRT optimization
        # profile's upper bound); past it a timing would describe no engine that runs.
        if batch > self.profile.batch_max:
            raise ValidationError(f"--batch = {batch}; profile '{self.profile.name}' runs batches of "
                                  f"{self.profile.batch_min}..{self.profile.batch_max} (its [input] batch_max)")
        if batch * 3 * h * w * 4 > MAX_BATCH_BYTES:
            raise ValidationError(f"--batch = {batch} at {h} x {w} needs {batch * 3 * h * w * 4 / 2**30:.1f} GiB "
                                  f"of input; the limit is {MAX_BATCH_BYTES / 2**30:g} GiB")
        x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
        table: dict[str, dict] = {}
        # The switch lock: no set_preference meanwhile (its load could evict the engine being
        # timed); the current preference's engine is pinned in the cache and stays usable.
        with self._switch_lock:
            for tid in self.manifest.topologies:
                # The steady state: the folded engine when the second tier is on.
                t0 = time.perf_counter()
                state, deltas = self._timing_state(tid)
                folded_ms = 1e3 * (time.perf_counter() - t0) if state.tier == "folded" else None
                row = time_engine(self._timer(state, x), iters, warmup, device_ms=self._device_ms(state))
                # Switch costs: binding a preference on the instant tier (hypernets + bind;
                # set_preference returns then) and a fresh engine load.
                with self._guard():
                    engine = self.cache.get(tid)
                t0 = time.perf_counter()
                self._bind(engine, tid, deltas)
                bind_ms = 1e3 * (time.perf_counter() - t0)
                t0 = time.perf_counter()
                with self._guard():
                    fresh = self._load_engine(tid)
                load_ms = 1e3 * (time.perf_counter() - t0)
                fresh.close()
                table[tid] = {**row, "batch": batch, "iters": iters, "bind_ms": bind_ms, "load_ms": load_ms,
                              "tier": state.tier, **measured_with(self.profile.threads or os.cpu_count() or 1)}
                if folded_ms is not None:
                    table[tid]["folded_ms"] = folded_ms        # building the second-tier engine
                if on_topology is not None:
                    on_topology(tid, table[tid])
        if self.read_only:
            self.latency_store = str(store_latency(self.manifest, self.profile.name, table))
            self.manifest = dataclasses.replace(self.manifest, latency={**self.manifest.latency,
                                                                        self.profile.name: table})
        else:
            self.manifest = S.update_manifest(self.root, lambda doc: S.set_latency(doc, self.profile.name, table))
            self.latency_store = str(self.root / "manifest.json")
        return table

    def _timing_state(self, topology: str) -> tuple[_State, np.ndarray]:
        """(the state ``profile`` times ``topology`` in, its BN deltas): the topology's engine
        with the weights of its first grid point bound (a static bundle: nothing to bind); in
        the steady state, i.e. on its folded engine (built now if not cached) unless the second
        tier is off. Call under ``_switch_lock``."""
        if topology not in self.manifest.topologies:
            raise ValidationError(f"topology {topology!r} is not in bundle {self.root}; expected one of "
                                  f"{', '.join(sorted(self.manifest.topologies))}")
        with self._guard():
            engine = self.cache.get(topology)
        p = self.manifest.first_points().get(topology) or \
            Preference(tuple([1 / self.n_tasks] * self.n_tasks), 0.5)
        if self.static:
            binding, c, deltas = "static", None, np.zeros(0, np.float32)
        else:
            binding, c, deltas = "exact", p.c, self.controller.deltas(p.r, p.c)
        key = (topology, tuple(p.r), c)
        tier = "refit" if self._in_place else "instant"
        state = _State(tuple(p.r), c, topology, engine, self._bind(engine, topology, deltas), binding, None,
                       key, tier, -1, deltas)
        if self.second_tier != "off":
            folded = self.cache.lookup(_folded_key(key))
            if folded is not None:
                state = dataclasses.replace(state, engine=folded, bound=folded.prepare({}), tier="folded")
            else:
                state = self._folded_state(state)
        return state, deltas

    def _timer(self, state: _State, x: np.ndarray) -> Callable[[], dict]:
        """The call that is timed: one run of batch ``x`` in ``state`` (engine + bound weights)."""
        return lambda: self._run(state, x)

    @staticmethod
    def _device_ms(state: _State) -> Callable[[], Optional[float]]:
        """The device time of the last run, for engines that measure it (TensorRT: CUDA events)."""
        return lambda: getattr(state.engine, "last_timing", {}).get("gpu_compute_ms")

    def timed_call(self, images, topology: Optional[str] = None) -> tuple[Callable[[], dict], dict[str, Any]]:
        """The call ``dymu-rt profile`` times, for callers that time it themselves (``dymu-rt
        compare`` interleaves several runtimes' calls: :func:`~dymu_rt.runtime.latency.time_interleaved`).

        ``images``: a preprocessed float32 batch [B, 3, H, W]. With ``topology`` None: the
        current preference's engine and bound weights (what :meth:`infer` runs for it, less
        preprocessing and the latency window); with a ``topology``: that topology's engine
        bound as :meth:`profile_topologies` binds it. Returns (call, facts): facts =
        {topology, binding ("exact", "nearest-grid" or "static"), binding_mode (the engine's;
        ONNX Runtime "affine": each modulated conv runs raw, then the preference's BN
        scale/shift fed as inputs), weight_kind (what is bound per slot: "affine"
        scale/shift or "folded" W', b'), bound_slots (modulated BN slots bound per
        preference; 0 for a static bundle's one folded graph), backend, profile, precision,
        threads, static}.
        """
        x = self._check_batch(images)
        if topology is None:
            state = self._state
            if state is None:
                raise ValidationError("no preference set; call set_preference(r, c) first, or name a topology")
        else:
            with self._switch_lock:
                state, _ = self._timing_state(topology)
        mode = state.engine.mode if state.engine.mode is not None else self.backend.binding
        facts = {"topology": state.topology, "binding": state.binding, "binding_mode": mode, "tier": state.tier,
                 "second_tier": self.second_tier,
                 "weight_kind": state.engine.weight_kind,
                 "bound_slots": len(self.manifest.topologies[state.topology].bn_slots),
                 "backend": self.backend.name, "profile": self.profile.name,
                 "precision": self.profile.precision, "threads": self.profile.threads,
                 "static": bool(self.static)}
        return self._timer(state, x), facts

    def _stop_worker(self) -> None:
        """Stop the second-tier worker and wait for it: a build in flight finishes and is
        discarded. (A daemon thread still inside ONNX Runtime's C++ when the interpreter exits
        aborts the process: "terminate called without an active exception".)"""
        with self._tier_cv:
            self._closed = True
            self._job = None
            self._tier_cv.notify_all()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    def close(self) -> None:
        """Release every engine (after the second-tier worker has stopped)."""
        self._stop_worker()
        with self._switch_lock, self._guard():
            self._state = None
            self._bound_keys.clear()
            self.cache.clear()


#: Runtimes that started a second-tier worker: stopped at exit, so a process that never
#: called close() does not abort while a worker is still building an engine.
_WITH_WORKERS: "weakref.WeakSet[Runtime]" = weakref.WeakSet()


@atexit.register
def _stop_workers_at_exit() -> None:
    for rt in list(_WITH_WORKERS):
        rt._stop_worker()


def check_input_shape(profile, manifest, root) -> None:
    """Refuse a bundle whose input size differs from the profile's ``[input] shape``."""
    if getattr(profile, "shape", None) is None:
        return
    want = [int(v) for v in profile.shape]
    have = [3, *manifest.input_size]
    if want != have:
        raise ValidationError(f"profile '{profile.name}' key 'input.shape' = {want} but bundle {root} takes "
                              f"{have} images (preprocessing.input_size); use a profile for this input size or "
                              "set [input] shape in a copy of the profile")


def _make_backend(name: str, profile, binding: Optional[str]) -> Backend:
    """The backend ``name`` for ``profile``, with binding mode ``binding`` when it offers several."""
    if binding is None:
        return get_backend(name)
    if not backend_class(name).binding_modes:
        raise ValidationError(f"--binding {binding!r} applies to the {' / '.join(with_binding_modes())} backend "
                              f"only; profile '{profile.name}' uses '{name}'")
    return get_backend(name, binding=binding)


def _folded_key(key: tuple) -> str:
    """The engine-cache key of the folded engine of weights ``key`` ((topology, r, c))."""
    return f"{key[0]}{FOLDED_MARK}{key[1:]!r}" if key else ""
