"""OpenVINO backend (x86-64 CPUs, Intel and AMD): the optional extra ``dymu-rt[openvino]``.

``openvino`` is imported lazily, on first use: the package imports, and every other backend
works, without it; asking for this backend on a machine without it is one line naming
``pip install "dymu-rt[openvino]"`` (:class:`~dymu_rt.core.errors.BackendUnavailable`).

One engine per topology, the same two binding modes as the ONNX Runtime backend's
(:mod:`dymu_rt.backends.onnxruntime`), so the runtime's two tiers work on it unchanged:

``affine`` (default; the instant tier)
    The topology's affine graph (:func:`dymu_rt.backends.affine.affine_graph`: each
    modulated conv raw, then the preference's BN ``<slot>.scale`` / ``<slot>.shift`` as
    runtime inputs) compiled once; a preference switch only builds new [1, C, 1, 1] inputs.
``session`` (the folded tier)
    The topology's folded graph with the preference's BN-folded weights written into it and
    compiled on its own (fully optimized, own weights): fastest per frame; a switch costs a
    model read + compile (what a background builder pays).

``binding_modes`` has no ``initializers``: OpenVINO has no counterpart of ONNX Runtime's
initializer override (a compiled model's constants are baked in at compile time).

Precision (the profile's ``precision``; every engine sets ``INFERENCE_PRECISION_HINT``
explicitly: OpenVINO's CPU plugin otherwise runs bf16 on any CPU that has BF16):

``fp32``
    ``INFERENCE_PRECISION_HINT = f32``.
``bf16``
    ``INFERENCE_PRECISION_HINT = bf16``: weights and activations in bfloat16, accumulation in
    fp32. Only where the CPU has native BF16 (``avx512_bf16`` or ``amx_bf16`` in
    /proc/cpuinfo; elsewhere OpenVINO's ``OPTIMIZATION_CAPABILITIES``); refused in one line on
    other CPUs (emulated bf16 would be slower than fp32 and still lose precision).
``int8``
    Q/DQ graphs derived from the tensor ranges ``dymu-rt calibrate`` stored in the bundle
    (:func:`dymu_rt.bundle.sections.int8_ranges`), the same ranges the ONNX Runtime and
    TensorRT backends use: one calibration per bundle, no second calibration pass and no
    extra dependency (NNCF would calibrate again, on data the runtime does not have, and
    pulls in its own stack). OpenVINO turns each QuantizeLinear/DequantizeLinear pair into
    a FakeQuantize that its low-precision transformations (LPT) fuse into int8 kernels.
    ``affine``: :func:`dymu_rt.backends.int8_affine.affine_qdq_model` (raw convs quantized,
    int8 values the same at every preference, BN scale/shift in float after them);
    ``session``: the folded graph quantized once per topology with
    :func:`dymu_rt.backends.precision.quantize_int8`, a preference's folded weights re-quantized
    per channel into it (:class:`dymu_rt.backends.precision.GraphWeights`). Activations are
    uint8 (asymmetric), the form x86 VNNI kernels take. Needs ``onnx`` (in the extra).
    Everything not quantized runs at ``INFERENCE_PRECISION_HINT = f32``.

Every engine is compiled for batch 1 (static shapes: OpenVINO's CPU plugin picks its
fastest kernels for them) with ``PERFORMANCE_HINT = LATENCY``, ``ENABLE_CPU_PINNING = False``
(see :func:`compile_config`) and ``INFERENCE_NUM_THREADS`` = the profile's ``threads``
(0: OpenVINO's default, all cores);
a batch of B images runs as B inferences. Compiled models are not cached on disk
(``can_cache`` is False): they are made on first use, like ONNX Runtime's ``session`` engines.

Thread safety: :meth:`OvEngine.prepare` returns an immutable :class:`Bound` (a compiled
model and its inputs); each ``run`` takes an infer request of its own from the compiled
model's pool (an OpenVINO infer request runs one inference at a time), so concurrent runs
never share a request and a caller that snapshots one ``Bound`` per request never mixes two
preferences.
"""

from __future__ import annotations

import dataclasses
import platform
import threading
import weakref
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from dymu_rt.backends import onnx_proto
from dymu_rt.backends.affine import affine_graph, modulated_convs
from dymu_rt.backends.base import Backend, Engine, EngineRequest
from dymu_rt.backends.int8_affine import affine_qdq_model, folded_qdq_model
from dymu_rt.backends.onnxruntime import FOLDED, INPUT_NAME
from dymu_rt.backends.precision import GraphWeights, quantize_int8
from dymu_rt.bundle.layout import is_bundle, read_manifest
from dymu_rt.bundle.sections import int8_ranges
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError
from dymu_rt.core.heap import heap_bytes

BINDING_MODES = ("affine", "session")
DEFAULT_BINDING = "affine"
#: precisions this backend runs (``fp16`` is refused: x86 CPUs have no fast fp16 path)
PRECISIONS = ("fp32", "bf16", "int8")
INSTALL_HINT = 'pip install "dymu-rt[openvino]"'
#: CPU flags (Linux /proc/cpuinfo names) of native BF16 arithmetic
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: profile precision -> OpenVINO's INFERENCE_PRECISION_HINT (int8: what is not quantized)
PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
_FACT_KEYS = ("openvino", "machine", "isa")

_CORE = None
_CORE_LOCK = threading.Lock()


def _ov():
    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable(f"the openvino backend needs the openvino package, which is not installed "
                                 f"here; install it with: {INSTALL_HINT}") from None
    return ov


def core():
    """The process's one ``openvino.Core`` (its CPU plugin and thread pools are shared)."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = _ov().Core()
        return _CORE


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def _cpu_name() -> str:
    try:
        return str(core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # a plugin that cannot answer: the name is informational only
        return platform.processor() or "unknown"


def bf16_support() -> tuple[bool, str]:
    """(whether this CPU computes in bf16 natively, what said so)."""
    flags = cpu_flags()
    if flags:
        found = [f for f in BF16_FLAGS if f in flags]
        return bool(found), ("/proc/cpuinfo flags " + (", ".join(found) if found else
                                                       f"have none of {', '.join(BF16_FLAGS)}"))
    caps = list(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return "BF16" in caps, f"OpenVINO OPTIMIZATION_CAPABILITIES {caps}"


def bf16_refusal(profile) -> Optional[str]:
    """The one-line reason a bf16 profile cannot run here, or None when it can."""
    ok, evidence = bf16_support()
    if ok:
        return None
    return (f"profile '{profile.name}': precision 'bf16' needs a CPU with native BF16 (AVX512_BF16 or AMX); "
            f"this one has none ({evidence}); use profile x86-64-cpu-openvino (fp32) or x86-64-cpu-openvino-int8")


def device_facts() -> dict[str, Any]:
    """What a compiled OpenVINO model is tied to: OpenVINO version, CPU architecture and ISA."""
    ov = _ov()
    flags = cpu_flags()
    return {"backend": "openvino", "openvino": ov.get_version(), "machine": platform.machine(),
            "isa": sorted(f for f in _ISA_FLAGS if f in flags), "cpu": _cpu_name()}


def fact_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between recorded and current facts ([] = compatible)."""
    return [f"{k} {recorded.get(k)!r} != {current.get(k)!r}" for k in _FACT_KEYS
            if recorded.get(k) != current.get(k)]


def compile_config(profile, precision: str) -> dict[str, Any]:
    """The CPU plugin properties of every engine for ``profile`` (module docstring)."""
    # No CPU pinning: OpenVINO pins its stream threads to cores by default, and on a machine
    # shared with other processes a pinned thread waits for its one core. Measured on the shared
    # 2-core EPYC (synth-nyu tree, 1 thread, interleaved): p50 3.4 ms pinned, 0.86 ms not
    # (same minimum, 0.52 ms): an embedded runtime must not assume the cores are its own.
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION_HINT[precision],
                              "ENABLE_CPU_PINNING": False}
    threads = int(getattr(profile, "threads", 0) or 0)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class Compiled:
    """One compiled model and a pool of its infer requests (one per concurrent run).

    A request remembers which bound inputs (``key``: the :class:`Bound` they came from, held
    weakly) it holds, so a run at the same preference sets only the image: an affine graph has two
    inputs per modulated BN slot (hundreds at pascal3), and setting them all per run cost
    more than the inference on small trees."""

    def __init__(self, compiled, nhwc: Sequence[bool] = (), held_bytes: Optional[int] = None,
                 first_request=None) -> None:
        self.model = compiled
        #: heap bytes measured while compiling it and creating its first infer request (None:
        #: not measurable here); each further request adds what its creation allocated
        self.held_bytes = held_bytes
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.output_names = [o.get_any_name() for o in compiled.outputs]
        #: per output: delivered NHWC by the compiled model (see :func:`compile_model`)
        self.nhwc = list(nhwc) or [False] * len(self.output_names)
        self._free: list = [] if first_request is None else [(first_request, None)]
        self._lock = threading.Lock()

    def _new_request(self):
        """A new infer request, its allocation added to :attr:`held_bytes` (call under ``_lock``)."""
        h0 = heap_bytes() if self.held_bytes is not None else None
        req = self.model.create_infer_request()
        if h0 is not None:
            self.held_bytes += max(0, (heap_bytes() or h0) - h0)
        return req

    def infer(self, image: np.ndarray, feeds: Mapping[str, np.ndarray], key: Any = None) -> list[np.ndarray]:
        """Outputs (copies, in ``output_names`` order) for one batch-1 image and its bound inputs
        ``feeds``; ``key`` identifies ``feeds`` (None: set them whatever the request holds)."""
        with self._lock:
            req, held = self._free.pop() if self._free else (self._new_request(), None)
        try:
            if feeds and (key is None or held is None or held() is not key):
                ov = _ov()
                for name, value in feeds.items():
                    req.set_tensor(name, ov.Tensor(np.ascontiguousarray(value)))
                # A weak reference: the Bound refers to this Compiled, so a strong one from
                # the pool would make a cycle that kept an evicted engine's compiled model and
                # buffers alive until the cyclic GC ran (RSS 1371 MB with 4 of 8 pascal3
                # engines cached, 514 MB of heap freed only by gc.collect()).
                held = None if key is None else weakref.ref(key)
            # no copies inside OpenVINO's Python layer: the image is read in place, and the
            # outputs are copied once, below (share_outputs=False would copy them all first)
            req.infer({INPUT_NAME: image}, share_inputs=True, share_outputs=True)
            outs = []
            for i, nhwc in enumerate(self.nhwc):
                data = req.get_output_tensor(i).data
                # always a copy (the request's buffer is reused by the next run; a transpose with
                # one channel is already contiguous, so ascontiguousarray would not copy), and an
                # NHWC output becomes a contiguous NCHW array in the same copy
                outs.append(np.array(data.transpose(0, 3, 1, 2) if nhwc else data, copy=True, order="C"))
            return outs
        finally:
            with self._lock:
                self._free.append((req, held))


def compile_model(model, profile, precision: str) -> Compiled:
    """Read ONNX ``model`` (a ModelProto or its bytes), fix its batch to 1, compile it for the CPU.

    Every 4-D output is delivered NHWC (a PrePostProcessor layout conversion) and transposed
    back to a contiguous NCHW array by :meth:`Compiled.infer`: the CPU plugin computes the
    heads' full-resolution outputs in a channels-last layout, and its own reorder to NCHW at
    the output was the costliest node of the pascal3 tree after the 1x1 convs (60 ms of
    525 for a 21-channel 512x512 output: a generic reorder for a channel count that is not a
    multiple of 8). Measured there (1 thread, interleaved): p50 633 ms as is, 515 ms NHWC +
    numpy transpose; the same outputs (max |diff| 2e-8)."""
    ov = _ov()
    from openvino.preprocess import PrePostProcessor

    data = model if isinstance(model, bytes) else model.SerializeToString()
    c = core()
    m = c.read_model(data)
    shapes = {}
    for inp in m.inputs:
        dims = list(inp.get_partial_shape())
        shapes[inp.get_any_name()] = ov.PartialShape([1] + [d for d in dims[1:]])
    m.reshape(shapes)
    nhwc = [o.get_partial_shape().rank.get_length() == 4 for o in m.outputs]
    if any(nhwc):
        ppp = PrePostProcessor(m)
        for o, four in zip(m.outputs, nhwc):
            if four:
                ppp.output(o.get_any_name()).tensor().set_layout(ov.Layout("NHWC"))
                ppp.output(o.get_any_name()).model().set_layout(ov.Layout("NCHW"))
        m = ppp.build()
    # What the engine really holds (docs/openvino.md, "Memory"): the compiled model's repacked
    # weights and its plan, plus one infer request's activation buffers, measured as the heap
    # growth across compiling it and creating that first request (pooled for the first run).
    h0 = heap_bytes()
    compiled = c.compile_model(m, "CPU", compile_config(profile, precision))
    del m
    request = compiled.create_infer_request()
    h1 = heap_bytes()
    held = None if h0 is None or h1 is None else max(0, h1 - h0)
    return Compiled(compiled, nhwc, held_bytes=held, first_request=request)


@dataclasses.dataclass(frozen=True)
class Bound:
    """One preference bound into one topology: a compiled model and its BN inputs, immutable."""

    compiled: Compiled
    feeds: Mapping[str, np.ndarray]


class OvEngine(Engine):
    """A loaded topology: one compiled affine model, or a folded model compiled per preference."""

    def __init__(self, topology: str, mode: str, precision: str, profile, slots: Sequence[str],
                 compiled: Optional[Compiled] = None, model=None, graph_weights=None,
                 weight_bytes: int = 0) -> None:
        self.topology = topology
        self.mode = mode
        self.precision = precision
        self.weight_kind = "affine" if mode == "affine" else "folded"
        self._profile = profile
        self._slots = list(slots)
        self._compiled = compiled          # affine: the one compiled model
        self._model = model                # session: the folded ModelProto (weights filled in)
        self._gw = graph_weights           # session int8: folded weights -> Q/DQ initializers
        self._bytes = int(weight_bytes)
        self._bound: Optional[Bound] = None
        self._base: Optional[Compiled] = None   # session: the graph's own weights (nothing to bind)
        self._lock = threading.Lock()

    # -- binding -------------------------------------------------------------------------

    def prepare(self, weights: Mapping[str, np.ndarray]) -> Bound:
        """Bind ``weights`` without touching any state another thread may be using (a folded
        second-tier engine holds its preference's weights: its argument is ignored)."""
        if self.mode == FOLDED:
            return Bound(self._compiled, {})
        if self.mode == "affine":
            feeds = {}
            for s in self._slots:
                for k in ("scale", "shift"):
                    v = np.asarray(weights[f"{s}.{k}"], dtype=np.float32)
                    feeds[f"{s}.{k}"] = np.ascontiguousarray(v.reshape(1, -1, 1, 1))
            return Bound(self._compiled, feeds)
        folded = {k: v for k, v in weights.items() if k.endswith((".conv.weight", ".conv.bias"))}
        if not folded:                      # a static bundle's one graph: nothing to bind
            with self._lock:
                if self._base is None:
                    self._base = compile_model(self._model, self._profile, self.precision)
                return Bound(self._base, {})
        missing = [f"{s}.conv.weight" for s in self._slots if f"{s}.conv.weight" not in folded]
        if missing:
            raise ValidationError(f"engine {self.topology}: no folded weights for {missing[:3]}")
        if self._gw is not None:            # Q/DQ graph: int8 values, per-channel scales, float bias
            values = self._gw.convert(folded)
        else:
            values = {k: np.asarray(v, np.float32) for k, v in folded.items()}
        model = type(self._model)()
        model.CopyFrom(self._model)
        for init in model.graph.initializer:
            if init.name in values:
                init.CopyFrom(onnx_proto.array_to_tensor(values[init.name], init.name, like=init))
        return Bound(compile_model(model, self._profile, self.precision), {})

    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Engine protocol: make ``weights`` the engine's current binding."""
        if self.mode == FOLDED:
            raise RuntimeError(f"engine {self.topology}: a folded engine holds one preference's weights; "
                               "build another with load_folded")
        self._bound = self.prepare(weights)

    # -- running -------------------------------------------------------------------------

    def run(self, images: np.ndarray, bound: Optional[Bound] = None) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch with ``bound`` (default: the current binding), one image
        at a time (engines are compiled for batch 1). Affine inputs with one row per image
        give each image its own preference, as in the ONNX Runtime backend."""
        b = bound or self._bound or (self.prepare({}) if self.mode == FOLDED else None)
        if b is None:
            raise RuntimeError(f"engine {self.topology}: no weights bound (call bind/prepare first)")
        images = np.ascontiguousarray(images, dtype=np.float32)
        n = len(images)
        for k, v in b.feeds.items():
            if v.shape[0] not in (1, n):
                raise ValidationError(f"input {k!r} has {v.shape[0]} rows; expected 1 or the batch size {n}")
        shared = all(v.shape[0] == 1 for v in b.feeds.values())
        per_image = []
        for i in range(n):
            if shared:
                per_image.append(b.compiled.infer(images[i:i + 1], b.feeds, key=b))
            else:
                feeds = {k: v if v.shape[0] == 1 else v[i:i + 1] for k, v in b.feeds.items()}
                per_image.append(b.compiled.infer(images[i:i + 1], feeds))
        names = b.compiled.output_names
        if n == 1:                          # the outputs are fresh copies already
            return dict(zip(names, per_image[0]))
        return {name: np.concatenate([o[j] for o in per_image]) for j, name in enumerate(names)}

    def memory_bytes(self) -> int:
        """Bytes this engine holds, as the engine LRU charges them: what compiling its model
        and creating its infer requests allocated (:attr:`Compiled.held_bytes`: repacked
        weights, the compiled plan, each request's activation buffers; measured, since
        OpenVINO reports no memory figure), plus the folded graph a ``session`` engine keeps
        to bind into; never less than its weights twice. Measured at pascal3: ~147 MB per
        affine engine (RSS grew ~120-160 MB per cached topology) where the weights alone
        gave 45 MB; synth-nyu 20 MB against 4 (docs/openvino.md, "Memory"). Without glibc's
        heap counter: the weights twice."""
        floor = 2 * self._bytes
        compiled = self._compiled or self._base
        held = None if compiled is None else compiled.held_bytes
        if held is None:
            return floor
        kept = self._bytes if self._model is not None else 0       # the folded graph to bind into
        return max(floor, int(held) + kept)

    def close(self) -> None:
        """Drop this engine's references; compiled models held by a ``Bound`` live on until
        the request using them finishes."""
        self._compiled = None
        self._model = None
        self._base = None
        self._bound = None


class OpenVinoBackend(Backend):
    """Engines for OpenVINO on x86-64 CPUs (see the module docstring)."""

    name = "openvino"
    needs_raw_weights = True            # affine engines hold the raw conv weights (fold_params)
    binding_modes = BINDING_MODES
    second_tier = "build"               # folded engines per preference (backends/base.py)

    def __init__(self, binding: str = DEFAULT_BINDING) -> None:
        if binding not in BINDING_MODES:
            raise ValidationError(f"binding mode {binding!r} is not offered by the openvino backend; expected one "
                                  f"of {', '.join(BINDING_MODES)}")
        self.binding = binding
        self.check_available()

    @classmethod
    def check_available(cls) -> None:
        """BackendUnavailable (one line, with the install command) unless openvino imports
        and has a CPU device."""
        _ov()
        if "CPU" not in core().available_devices:
            raise BackendUnavailable("openvino is installed but reports no CPU device")

    # -- precision ---------------------------------------------------------------------------

    @staticmethod
    def _precision(profile) -> str:
        precision = getattr(profile, "precision", "fp32")
        if precision not in PRECISIONS:
            raise ValidationError(f"profile '{profile.name}': precision {precision!r} is not supported by the "
                                  f"openvino backend; expected one of {', '.join(PRECISIONS)}")
        if precision == "bf16":
            reason = bf16_refusal(profile)
            if reason is not None:
                raise ValidationError(reason)
        return precision

    def can_cache(self, profile) -> bool:
        """Compiled models are made on first use, never written into a bundle."""
        return False

    def check_bundle(self, root: Path, manifest, profile) -> None:
        """Refuse at open time: a precision this backend or CPU cannot run (bf16 without native
        BF16), or int8 with a topology that has no calibrated ranges (one line, with the fix)."""
        if self._precision(profile) != "int8":
            return
        for tid in sorted(manifest.topologies):
            int8_ranges(root, manifest, tid, check=True)

    def device_facts(self) -> dict[str, Any]:
        """See :func:`device_facts`."""
        return device_facts()

    def compile(self, request: EngineRequest, out_dir: Path) -> dict:
        """Not offered: see :meth:`can_cache`."""
        raise ValueError("the openvino backend compiles engines in memory (can_cache is False)")

    # -- loading -------------------------------------------------------------------------------

    @staticmethod
    def _ranges(request: EngineRequest) -> Path:
        root, manifest = request.bundle_root, request.manifest
        if manifest is None:
            if not is_bundle(root):
                raise BundleError(f"graph {request.graph} is not inside a bundle; INT8 needs the calibration that "
                                  "`dymu-rt calibrate BUNDLE --synth 64` records in a bundle")
            manifest = read_manifest(root)
        return int8_ranges(root, manifest, request.topology, check=True)

    @staticmethod
    def _raw(request: EngineRequest) -> Mapping[str, np.ndarray]:
        if request.raw_weights is not None:
            return request.raw_weights
        if request.pool is not None:
            return request.pool.raw_weights(request.slots)
        raise ValueError("affine binding needs the raw conv weights (EngineRequest.raw_weights or pool)")

    def load(self, request: EngineRequest) -> OvEngine:
        """The engine of ``request``'s topology in this backend's binding mode and the profile's
        precision (compiled now for ``affine``; per preference for ``session``)."""
        profile, topology, graph, slots = request.profile, request.topology, Path(request.graph), request.slots
        precision = self._precision(profile)
        structure = onnx_proto.load_model(graph, external=False)
        size = graph.stat().st_size + onnx_proto.external_bytes(structure, graph.parent)
        modulated_convs(structure, slots)
        if precision == "int8":
            return self._load_int8(request, size)
        model = onnx_proto.load_external(structure, graph.parent)
        if self.binding == "affine":
            compiled = compile_model(affine_graph(model, self._raw(request), slots), profile, precision)
            return OvEngine(topology, "affine", precision, profile, slots, compiled=compiled, weight_bytes=size)
        return OvEngine(topology, "session", precision, profile, slots, model=model, weight_bytes=size)

    # -- second tier ---------------------------------------------------------------------------

    def folds(self, profile) -> bool:
        """Folded second-tier engines back the ``affine`` binding (fp32, bf16 and int8); the
        ``session`` mode compiles a folded model per preference already."""
        return self.binding == "affine" and self._precision(profile) in PRECISIONS

    def load_folded(self, request: EngineRequest, weights: Mapping[str, np.ndarray]) -> OvEngine:
        """The second-tier engine of one preference: the topology's graph with that preference's
        folded ``<slot>.conv.weight``/``.conv.bias`` in place of the anchor's, compiled at the
        profile's precision (INT8: the folded Q/DQ graph from the calibrated ranges, the form
        ONNX Runtime's folded INT8 tier runs)."""
        profile, graph, slots = request.profile, Path(request.graph), list(request.slots)
        precision = self._precision(profile)
        missing = [f"{s}.{k}" for s in slots for k in ("conv.weight", "conv.bias") if f"{s}.{k}" not in weights]
        if missing:
            raise ValidationError(f"engine {request.topology}: no folded weights for {missing[:3]}")
        values = {k: np.ascontiguousarray(weights[k], np.float32) for s in slots
                  for k in (f"{s}.conv.weight", f"{s}.conv.bias")}
        structure = onnx_proto.load_model(graph, external=False)
        size = graph.stat().st_size + onnx_proto.external_bytes(structure, graph.parent)
        if precision == "int8":
            if request.pool is None:
                raise BundleError(f"topology {request.topology}: INT8 needs the bundle's weights (open the bundle "
                                  "with dymu_rt.runtime.Runtime)")
            model = folded_qdq_model(graph, request.pool, values, self._ranges(request), "uint8")
        else:
            model = onnx_proto.load_external(structure, graph.parent)
            modulated_convs(model, slots)
            for init in model.graph.initializer:
                if init.name in values:
                    init.CopyFrom(onnx_proto.array_to_tensor(values[init.name], init.name, like=init))
        eng = OvEngine(request.topology, FOLDED, precision, profile, (),
                       compiled=compile_model(model, profile, precision), weight_bytes=size)
        eng.tier = FOLDED
        return eng

    def _load_int8(self, request: EngineRequest, size: int) -> OvEngine:
        import tempfile

        import onnx

        ranges = self._ranges(request)
        profile, slots = request.profile, request.slots
        if self.binding == "affine":
            if request.pool is None:
                raise BundleError(f"topology {request.topology}: INT8 needs the bundle's weights (open the bundle "
                                  "with dymu_rt.runtime.Runtime)")
            model = affine_qdq_model(Path(request.graph), request.pool, slots, ranges, "uint8")
            return OvEngine(request.topology, "affine", "int8", profile, slots,
                            compiled=compile_model(model, profile, "int8"), weight_bytes=size)
        with tempfile.TemporaryDirectory(prefix="dymu-ov-int8-") as tmp:
            out = Path(tmp) / "qdq.onnx"
            quantize_int8(request.graph, out, None, cache_path=ranges, activations="uint8")
            model = onnx.load(str(out))
        return OvEngine(request.topology, "session", "int8", profile, slots, model=model,
                        graph_weights=GraphWeights(model), weight_bytes=size)
