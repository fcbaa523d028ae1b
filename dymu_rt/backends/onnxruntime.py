"""ONNX Runtime backend (CPU): the embedded default that runs everywhere.

One *engine* per topology; a preference's BN-folded weights are *bound* into it. How they
are bound is the binding mode (measured by ``benchmarks/bench_binding.py``):

``affine`` (default)
    Graph surgery (plain protobuf edits): each modulated folded conv becomes the raw conv
    (weights from ``fold_params``, no bias) followed by a per-channel ``Mul`` by runtime
    input ``<slot>.scale`` and ``Add`` of ``<slot>.shift`` (declared ``[batch, C, 1, 1]``,
    the image's batch dimension). One session per topology serves every preference; a switch
    only builds new small input arrays (microseconds), at a modest steady-state cost (the
    Mul/Add are not fused into the conv). The runtime feeds ``[1, C, 1, 1]`` (one preference
    for the whole batch; ONNX broadcasting); a server batching requests feeds one row per
    image, so one run mixes preferences (:mod:`dymu_rt.serve.triton`).
``initializers``
    The folded graph with ``SessionOptions.add_initializer`` overriding the modulated
    conv weights/biases: a new session per preference. A switch costs a session creation
    (tens of ms). Caveat found while measuring: ORT's NCHWc layout transformer
    (ORT_ENABLE_ALL) reads conv weights from the model and silently ignores the
    overrides, so this mode disables that one transformer and loses its speed-up.
``session``
    A whole new model (initializers replaced in the proto) and a fully optimized session
    per preference: fastest steady state, a switch costs proto edits + a session creation.

Binding weights (the ``Mapping[str, np.ndarray]`` of :meth:`OrtEngine.bind`):
``folded`` engines (``initializers``/``session``) take ``<slot>.conv.weight`` and
``<slot>.conv.bias`` (W', b' of docs/INTERFACES.md); ``affine`` engines take
``<slot>.scale`` = (γ+Δγ)/σ and ``<slot>.shift`` = b' ([C] each). ``OrtEngine.weight_kind``
says which; :mod:`dymu_rt.runtime.binding` computes both from ``fold_params``.

Thread safety: :meth:`OrtEngine.prepare` returns an immutable :class:`Bound` (the session
plus its weight feeds); ``run(images, bound)`` only reads it, and ORT sessions accept
concurrent ``run`` calls, so a caller that snapshots one ``Bound`` per request never mixes
two preferences in one result.

Precision (the profile's ``precision``; :meth:`OnnxRuntimeBackend.check_bundle` refuses an
unusable one when the runtime opens a bundle):

``fp32``
    The bundle's graphs, any binding mode above.
``int8``
    The *affine* Q/DQ graph of the topology (:mod:`dymu_rt.backends.int8_affine`): raw
    convs quantized per channel (int8 values the same at every preference), the BN
    scale/shift in float as runtime inputs after each dequantized conv output; derived at
    load from the ranges ``dymu-rt calibrate`` stored (:func:`dymu_rt.bundle.sections.int8_ranges`)
    and the bundle's weights; uint8 activations on x86 (U8S8), symmetric int8 elsewhere
    (``int8_activations=`` overrides). Binding mode ``affine`` whatever mode was asked: one
    session per topology, a preference switch is new feeds. Measured at the nyuv2 preset
    (benchmarks/exp_int8.py, 1 thread, AVX-512 VNNI): 3.39x FP32 speed; the folded Q/DQ graph
    with a session per preference ran 3.56x but a switch cost a session (seconds at nyuv2).
    A topology without calibrated ranges is refused with the ``dymu-rt calibrate`` fix.
``fp16``
    Refused: ORT's CPU kernels gain nothing from an FP16 graph (measured 1.02-1.04x the
    FP32 latency) and only add FP16 rounding error. FP16 is for the TensorRT backend.

Disk cache of optimized graphs: :meth:`OnnxRuntimeBackend.compile` writes the
ORT_ENABLE_ALL-optimized graph of an fp32 ``affine`` engine to
``BUNDLE/engines/onnxruntime/<profile>/<topology>.<precision>.ort.onnx`` (the precision in
the name, so graphs of different precisions never collide; :meth:`load` uses an artifact
only when its precision is the profile's). INT8 engines are not cached on disk: their
sessions are made per preference. Such graphs hold
CPU-specific layouts (NCHWc blocking for the host's vector ISA), so they are tied to the
ORT version, the CPU architecture and its vector ISA (:func:`device_facts`); the runtime
refuses a bundle whose cached graphs were made for other facts, with a hint to rebuild.
The other modes do not use the disk cache (their sessions are per preference anyway).
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from dymu_rt.backends import onnx_proto
from dymu_rt.backends.affine import affine_graph, modulated_convs
from dymu_rt.backends.base import Backend, Engine, EngineRequest
from dymu_rt.backends.int8_affine import affine_qdq_model, folded_qdq_model
from dymu_rt.backends.ort_sharing import external_names, pool_values, register_env_arena, shared_options
from dymu_rt.bundle.layout import is_bundle, read_manifest
from dymu_rt.bundle.sections import int8_ranges
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError
from dymu_rt.core.io import atomic_path, sha256_file

BINDING_MODES = ("affine", "initializers", "session")
#: the mode of a second-tier engine (:meth:`OnnxRuntimeBackend.load_folded`)
FOLDED = "folded"
DEFAULT_BINDING = "affine"
INPUT_NAME = "image"
# Vector ISA flags that change which kernels/layouts ORT picks on a CPU.
_ISA_FLAGS = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile",
              "asimd", "sve", "asimddp")
_FACT_KEYS = ("onnxruntime", "machine", "isa")
#: precisions this backend runs (``fp16`` is refused, see the module docstring)
PRECISIONS = ("fp32", "int8")
INT8_ACTIVATIONS = ("auto", "int8", "uint8")


def int8_activations_for(machine: Optional[str] = None) -> str:
    """The INT8 graph variant ORT runs fastest on ``machine`` (default: this one): ``uint8``
    activations on x86 (U8S8 kernels; S8S8 measured 1.3-1.5x the FP32 latency there, U8S8
    0.6-0.8x), the symmetric ``int8`` graph shared with TensorRT elsewhere (ARM has S8S8 kernels)."""
    m = (machine or platform.machine()).lower()
    return "uint8" if m in ("x86_64", "amd64", "x86", "i386", "i686") else "int8"


def fp16_refusal(profile) -> str:
    """The one-line reason an fp16 profile is refused by this backend."""
    return (f"profile '{profile.name}': precision 'fp16' is not supported by the onnxruntime backend on CPU: "
            "ORT's CPU kernels run an FP16 graph no faster than FP32 (measured 1.02-1.04x the FP32 latency) "
            "and only add FP16 rounding error; use precision \"fp32\" or \"int8\" (profile x86-64-cpu-int8), "
            "or fp16 with the tensorrt backend")


def artifact_precision(path) -> str:
    """Precision of a cached optimized graph from its name (``<topology>.<precision>.ort.onnx``;
    names without one were written before precision existed: fp32)."""
    name = Path(path).name
    parts = name[: -len(".ort.onnx")].rsplit(".", 1) if name.endswith(".ort.onnx") else []
    return parts[1] if len(parts) == 2 and parts[1] in ("fp32", "fp16", "int8") else "fp32"


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:   # pragma: no cover - a declared dependency
        raise BackendUnavailable(f"onnxruntime is not installed ({e})") from None
    ort.set_default_logger_severity(3)
    return ort


def _cpu_info() -> tuple[str, list[str]]:
    """(CPU model name, relevant vector-ISA flags) from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            name = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return name, sorted(f for f in _ISA_FLAGS if f in flags)


def device_facts() -> dict[str, Any]:
    """What an optimized ORT graph is tied to: ORT version, CPU architecture and vector ISA."""
    ort = _ort()
    name, isa = _cpu_info()
    return {"backend": "onnxruntime", "onnxruntime": ort.__version__, "machine": platform.machine(),
            "isa": isa, "cpu": name}


def fact_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between recorded and current facts ([] = compatible)."""
    return [f"{k} {recorded.get(k)!r} != {current.get(k)!r}" for k in _FACT_KEYS
            if recorded.get(k) != current.get(k)]


@dataclasses.dataclass(frozen=True)
class Bound:
    """One preference bound into one topology: what a single ``run`` needs, immutable."""

    session: Any
    feeds: Mapping[str, np.ndarray]
    keepalive: tuple = ()          # arrays/OrtValues an add_initializer session must outlive


def _session_options(profile, level: str = "all", optimized_path: Optional[Path] = None):
    ort = _ort()
    so = ort.SessionOptions()
    # One activation arena per process, not one per session (ort_sharing.register_env_arena):
    # K cached sessions (instant and folded engines) then hold one arena, not K that each
    # grew to their graph's peak (tens of MB per session at pascal3's 512x512).

    register_env_arena(ort)
    so.add_session_config_entry("session.use_env_allocators", "1")
    so.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    so.intra_op_num_threads = int(getattr(profile, "threads", 0) or 0)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


def _new_session(model: bytes | str | Path, so):
    ort = _ort()
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


class OrtEngine(Engine):
    """A loaded topology: one base session (``affine``) or a recipe for bound sessions."""

    def __init__(self, topology: str, mode: str, profile, model, slots: Sequence[str],
                 session=None, model_bytes: int = 0, graph_weights=None, graph: Optional[Path] = None,
                 shared: Optional[Mapping[str, int]] = None) -> None:
        self.topology = topology
        self._shared = dict(shared or {})      # weights read from the runtime's pool: name -> bytes
        self.mode = mode
        self.weight_kind = "affine" if mode == "affine" else "folded"
        # INT8: how folded weights map onto the Q/DQ graph's initializers (None: fp32 graph)
        self._gw = graph_weights
        self.precision = graph_weights.precision if graph_weights is not None else "fp32"
        self.graph = graph                # the graph file this engine runs (fp32 or Q/DQ)
        self._profile = profile
        self._model = model            # folded ModelProto (initializers/session modes)
        self._slots = list(slots)
        self._session = session        # affine: the one session
        self._bytes = model_bytes
        self._bound: Optional[Bound] = None
        self.output_names: list[str] = []
        if session is not None:
            self.output_names = [o.name for o in session.get_outputs()]
        elif model is not None:
            self.output_names = [o.name for o in model.graph.output]

    # -- binding -------------------------------------------------------------------------

    def prepare(self, weights: Mapping[str, np.ndarray]) -> Bound:
        """Bind ``weights`` without touching any state another thread may be using. A
        ``folded`` (second-tier) engine holds one preference's weights: it ignores ``weights``."""
        if self.mode == FOLDED:
            return Bound(self._session, {})
        if self.mode == "affine":
            feeds = {}
            for s in self._slots:
                for k in ("scale", "shift"):
                    v = np.asarray(weights[f"{s}.{k}"], dtype=np.float32)
                    feeds[f"{s}.{k}"] = np.ascontiguousarray(v.reshape(1, -1, 1, 1))
            return Bound(self._session, feeds)
        if self.mode == "initializers":
            ort = _ort()
            so = _session_options(self._profile)
            # ORT 1.31's NCHWc layout transformer reads conv weights from the model, not from
            # add_initializer overrides: with it on, the override is silently ignored
            # (tests/backends/test_backend_onnxruntime.py::test_modes_agree_and_overrides_take_effect
            # catches this).
            so.add_session_config_entry("optimization.disable_specified_optimizers", "NchwcTransformer")
            vals = []
            for s in self._slots:
                for k in ("conv.weight", "conv.bias"):
                    a = np.ascontiguousarray(weights[f"{s}.{k}"], np.float32)
                    v = ort.OrtValue.ortvalue_from_numpy(a)
                    so.add_initializer(f"{s}.{k}", v)
                    vals += [a, v]      # the OrtValue borrows a's memory: keep both alive
            return Bound(_new_session(self._model.SerializeToString(), so), {}, tuple(vals))
        # session: a whole new model per preference
        if self._gw is not None:        # Q/DQ graph: int8 values, per-channel scales, float bias
            missing = [f"{s}.conv.weight" for s in self._slots if f"{s}.conv.weight" not in weights]
            if missing:
                raise ValidationError(f"engine {self.topology}: no folded weights for {missing[:3]}")
            values = self._gw.convert({k: v for k, v in weights.items() if k.endswith((".conv.weight", ".conv.bias"))})
        else:
            values = {k: np.asarray(v, np.float32) for k, v in weights.items()}
        model = type(self._model)()
        model.CopyFrom(self._model)
        for init in model.graph.initializer:
            if init.name in values:
                init.CopyFrom(onnx_proto.array_to_tensor(values[init.name], init.name, like=init))
        return Bound(_new_session(model.SerializeToString(), _session_options(self._profile)), {})

    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Engine protocol: make ``weights`` the engine's current binding."""
        if self.mode == FOLDED:
            raise RuntimeError(f"engine {self.topology}: a folded engine holds one preference's weights; "
                               "build another with load_folded")
        self._bound = self.prepare(weights)

    # -- running -------------------------------------------------------------------------

    def run(self, images: np.ndarray, bound: Optional[Bound] = None) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch with ``bound`` (default: the current binding)."""
        b = bound or self._bound or (self.prepare({}) if self.mode == FOLDED else None)
        if b is None:
            raise RuntimeError(f"engine {self.topology}: no weights bound (call bind/prepare first)")
        outs = b.session.run(self.output_names, {INPUT_NAME: images, **b.feeds})
        return dict(zip(self.output_names, outs))

    def memory_bytes(self) -> int:
        """Bytes this engine holds on its own. A shared-weights engine: its graph structure
        (its weights are in :meth:`shared_weights`, counted once per runtime by the engine
        cache). Otherwise the weights held (:func:`graph_weight_bytes` of the topology's graph:
        its file *plus the external data it references*) times two: ORT keeps a pre-packed
        copy of conv weights next to the initializers. Activations are not counted (they
        depend on the batch and are freed between runs)."""
        return self._bytes if self._shared else 2 * self._bytes

    def shared_weights(self) -> list[tuple[str, int]]:
        """(tensor name, bytes) of the weights read from the runtime's one shared copy."""
        return list(self._shared.items())

    def close(self) -> None:
        """Drop this engine's references; sessions still held by a ``Bound`` live on until
        the request using them finishes (Python reference counting frees them)."""
        self._session = None
        self._bound = None
        self._model = None


class OnnxRuntimeBackend(Backend):
    """Engines for ONNX Runtime on the CPU (see the module docstring for binding modes)."""

    name = "onnxruntime"
    needs_raw_weights = True          # affine engines hold the raw conv weights (fold_params)
    binding_modes = BINDING_MODES
    second_tier = "build"

    def __init__(self, binding: str = DEFAULT_BINDING, int8_activations: str = "auto",
                 share_weights: bool = True) -> None:
        if binding not in BINDING_MODES:
            raise ValidationError(f"binding mode {binding!r} is unknown; expected one of {', '.join(BINDING_MODES)}")
        if int8_activations not in INT8_ACTIVATIONS:
            raise ValidationError(f"int8_activations {int8_activations!r} is unknown; expected one of "
                                  f"{', '.join(INT8_ACTIVATIONS)}")
        self.binding = binding
        #: FP32 ``affine`` engines of one runtime read one shared copy of the weights
        #: (ort_sharing: RSS with 8 cached nyuv2 topologies 1.19x that with 1, vs 5.3x)
        self.share_weights = bool(share_weights)
        self.int8_activations = int8_activations_for() if int8_activations == "auto" else int8_activations
        _ort()

    # -- precision ---------------------------------------------------------------------------

    @staticmethod
    def _precision(profile) -> str:
        precision = getattr(profile, "precision", "fp32")
        if precision == "fp16":
            raise ValidationError(fp16_refusal(profile))
        if precision not in PRECISIONS:
            raise ValidationError(f"profile '{profile.name}': precision {precision!r} is unknown; expected "
                                  f"one of {', '.join(PRECISIONS)}")
        return precision

    def can_cache(self, profile) -> bool:
        """Whether engines for ``profile`` are cached on disk (fp32 ``affine`` only, and only
        for bundles whose weights are not shared: see :meth:`shares`)."""
        return self.binding == "affine" and self._precision(profile) == "fp32"

    def shares(self, pool) -> bool:
        """Whether engines read ``pool``'s one copy of the weights instead of their own: then
        no optimized graph is cached on disk (it would hold, and store in the bundle, one more
        copy of every weight per topology)."""
        return self.share_weights and pool is not None and pool.has_store

    def check_bundle(self, root: Path, manifest, profile) -> None:
        """Refuse, at open time, a precision this backend cannot run on ``root``: fp16, or int8
        with a topology that has no (valid) calibrated Q/DQ graph (one line, with the fix)."""
        if self._precision(profile) != "int8":
            return
        for tid in sorted(manifest.topologies):
            int8_ranges(root, manifest, tid, check=True)

    def _int8_ranges(self, request: EngineRequest) -> Path:
        """The calibrated tensor ranges of the request's topology, checked against the manifest
        of the bundle that holds its FP32 graph."""
        root = request.bundle_root
        manifest = request.manifest
        if manifest is None:
            if not is_bundle(root):
                raise BundleError(f"graph {request.graph} is not inside a bundle; INT8 needs the calibration that "
                                  "`dymu-rt calibrate BUNDLE --synth 64` records in a bundle")
            manifest = read_manifest(root)
        return int8_ranges(root, manifest, request.topology, check=True)

    def _load_int8(self, request: EngineRequest) -> "OrtEngine":
        """The affine Q/DQ engine of the request's topology (backends/int8_affine.py): derived
        from the stored ranges and the bundle's weights, one session for every preference."""
        if request.pool is None:
            raise BundleError(f"topology {request.topology}: INT8 needs the bundle's weights (open the bundle "
                              "with dymu_rt.runtime.Runtime)")
        ranges = self._int8_ranges(request)
        model = affine_qdq_model(Path(request.graph), request.pool, request.slots, ranges, self.int8_activations)
        data = model.SerializeToString()
        sess = _new_session(data, _session_options(request.profile, "all"))
        eng = OrtEngine(request.topology, "affine", request.profile, None, request.slots, session=sess,
                        model_bytes=len(data))
        eng.precision = "int8"
        return eng

    # -- second tier ---------------------------------------------------------------------------

    def folds(self, profile) -> bool:
        """Folded second-tier engines back the ``affine`` binding (fp32 and int8); the other
        modes make a folded session per preference already."""
        return self.binding == "affine" and self._precision(profile) in PRECISIONS

    def load_folded(self, request: EngineRequest, weights: Mapping[str, np.ndarray]) -> "OrtEngine":
        """The second-tier engine of one preference: the topology's folded graph with that
        preference's ``<slot>.conv.weight``/``.conv.bias`` in place of the anchor's, its own
        copy of every weight, one ORT_ENABLE_ALL session (NCHWc layouts, prepacked weights:
        what a plain fully optimized session on the folded graph runs). INT8 profiles: the
        folded Q/DQ graph of that preference (U8S8 on x86; weights int8 per channel, ranges
        the ones ``dymu-rt calibrate`` stored, as the affine INT8 engine uses)."""
        graph, slots = Path(request.graph), list(request.slots)
        missing = [f"{s}.{k}" for s in slots for k in ("conv.weight", "conv.bias") if f"{s}.{k}" not in weights]
        if missing:
            raise ValidationError(f"engine {request.topology}: no folded weights for {missing[:3]}")
        values = {k: np.ascontiguousarray(weights[k], np.float32) for s in slots
                  for k in (f"{s}.conv.weight", f"{s}.conv.bias")}
        structure = onnx_proto.load_model(graph, external=False)
        size = graph.stat().st_size + onnx_proto.external_bytes(structure, graph.parent)
        if self._precision(request.profile) == "int8":
            if request.pool is None:
                raise BundleError(f"topology {request.topology}: INT8 needs the bundle's weights (open the bundle "
                                  "with dymu_rt.runtime.Runtime)")
            model = folded_qdq_model(graph, request.pool, values, self._int8_ranges(request),
                                     self.int8_activations)
        else:
            model = onnx_proto.load_external(structure, graph.parent)
            modulated_convs(model, slots)
            for init in model.graph.initializer:
                if init.name in values:
                    init.CopyFrom(onnx_proto.array_to_tensor(values[init.name], init.name, like=init))
        data = model.SerializeToString()
        del model
        sess = _new_session(data, _session_options(request.profile, "all"))
        eng = OrtEngine(request.topology, FOLDED, request.profile, None, (), session=sess,
                        model_bytes=len(data) if self._precision(request.profile) == "int8" else size)
        eng.tier = FOLDED
        eng.precision = self._precision(request.profile)
        return eng

    def device_facts(self) -> dict[str, Any]:
        """See :func:`device_facts`."""
        return device_facts()

    def _graph(self, graph: Path, raw: Optional[Mapping[str, np.ndarray]], slots: Sequence[str], model=None):
        """The model this backend runs for ``graph`` (``model``: its structure, already read)."""
        model = onnx_proto.load_external(model if model is not None else onnx_proto.load_model(graph, external=False),
                                         Path(graph).parent)
        modulated_convs(model, slots)
        if self.binding == "affine":
            if raw is None:
                raise ValueError("affine binding needs the raw conv weights (fold_params)")
            model = affine_graph(model, raw, slots)
        return model

    def _shares(self, request: EngineRequest) -> bool:
        """Whether ``request``'s engine holds no weights of its own (``share_weights`` and a
        bundle with a weights file: :mod:`dymu_rt.backends.ort_sharing`)."""
        return self.shares(request.pool)

    def _load_shared(self, request: EngineRequest) -> "OrtEngine":
        """An ``affine`` FP32 engine whose session reads every weight from the bundle's one
        host copy (``request.pool``): no bytes of its own but the graph structure."""
        ort = _ort()
        graph, pool = Path(request.graph), request.pool
        model = onnx_proto.load_model(graph, external=False)
        modulated_convs(model, request.slots)
        model = affine_graph(model, None, request.slots)
        so = _session_options(request.profile, "all")
        shared_options(ort, so)
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(graph.parent))
        names = external_names(model)
        pool_values(pool).add_to(ort, so, {n: (lambda n=n: pool.array(n)) for n in names})
        sess = _new_session(model.SerializeToString(), so)
        return OrtEngine(request.topology, "affine", request.profile, None, request.slots, session=sess,
                         model_bytes=len(model.SerializeToString()),
                         shared={n: pool.array_bytes(n) for n in names})

    def compile(self, request: EngineRequest, out_dir: Path) -> dict:
        """Cache the ORT_ENABLE_ALL-optimized ``affine`` graph under ``out_dir`` (atomic).

        Returns ``{file, sha256}`` with ``file`` relative to ``out_dir``. Only ``affine``
        engines are cached on disk (see the module docstring).
        """
        profile = request.profile
        if not self.can_cache(profile):
            raise ValueError("only fp32 affine engines are cached on disk")
        model = self._graph(Path(request.graph), request.raw_weights, request.slots)
        name = f"{request.topology or Path(request.graph).stem}.{profile.precision}.ort.onnx"
        target = Path(out_dir) / name
        with atomic_path(target) as tmp:
            _new_session(model.SerializeToString(), _session_options(profile, "all", tmp))
        return {"file": name, "sha256": sha256_file(target)}

    def load(self, request: EngineRequest) -> OrtEngine:
        """Load a topology's engine; ``request.artifact`` is a cached optimized graph or None.

        ``request.slots`` are the topology's modulated BN slots; ``request.raw_weights``
        their fold_params (needed by ``affine``). A cached optimized graph is loaded with
        optimizations off (they were applied when it was written). ``request.graph`` is
        always the bundle's FP32 graph; an int8 profile loads the topology's calibrated Q/DQ
        graph instead (binding mode ``session``, see the module docstring).
        """
        profile, topology, graph, slots = request.profile, request.topology, Path(request.graph), request.slots
        raw_weights = request.raw_weights
        artifact = None if request.artifact is None else Path(request.artifact)
        precision = self._precision(profile)
        structure = onnx_proto.load_model(graph, external=False)       # read once: size, then weights
        size = Path(graph).stat().st_size + onnx_proto.external_bytes(structure, Path(graph).parent)
        if precision == "int8":
            return self._load_int8(request)
        if self.binding == "affine" and precision == "fp32" and self._shares(request):
            return self._load_shared(request)
        if artifact is not None and artifact_precision(artifact) != precision:
            artifact = None             # an optimized graph of another precision: not ours
        if self.binding == "affine" and artifact is not None:
            sess = _new_session(str(artifact), _session_options(profile, "none"))
            return OrtEngine(topology, "affine", profile, None, slots, session=sess, model_bytes=size)
        model = self._graph(Path(graph), raw_weights, slots, structure)
        if self.binding == "affine":
            sess = _new_session(model.SerializeToString(), _session_options(profile, "all"))
            return OrtEngine(topology, "affine", profile, None, slots, session=sess, model_bytes=size)
        return OrtEngine(topology, self.binding, profile, model, slots, model_bytes=size)


def graph_weight_bytes(graph: Path) -> int:
    """Bytes of the weights an ONNX graph holds: its file plus the external data its
    initializers reference (``length`` of each external range; a reference without a length
    counts its whole file once). Falls back to the file size when the graph cannot be read."""
    size = Path(graph).stat().st_size
    try:
        model = onnx_proto.load_model(graph, external=False)
    except Exception:  # unreadable graph: the loader reports it; here only an estimate
        return size
    return size + onnx_proto.external_bytes(model, Path(graph).parent)
