"""ONNX Runtime backend (CPU): the embedded default that runs everywhere.

One *engine* per topology; a preference's BN-folded weights are *bound* into it. How they
are bound is the binding mode (measured by ``benchmarks/bench_binding.py``):

``affine`` (default)
    Graph surgery (onnx-graphsurgeon): each modulated folded conv becomes the raw conv
    (weights from ``fold_params``, no bias) followed by a per-channel ``Mul`` by runtime
    input ``<slot>.scale`` and ``Add`` of ``<slot>.shift`` ([1, C, 1, 1] each). One session
    per topology serves every preference; a switch only builds new small input arrays
    (microseconds), at a modest steady-state cost (the Mul/Add are not fused into the conv).
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

Disk cache of optimized graphs: :meth:`OnnxRuntimeBackend.compile` writes the
ORT_ENABLE_ALL-optimized graph of an ``affine`` engine to
``BUNDLE/engines/onnxruntime/<profile>/<topology>.ort.onnx``. Such graphs hold
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

from dymu_rt.errors import BackendUnavailable, ValidationError
from dymu_rt.utils.io import atomic_path, sha256_file

BINDING_MODES = ("affine", "initializers", "session")
DEFAULT_BINDING = "affine"
INPUT_NAME = "image"
# Vector ISA flags that change which kernels/layouts ORT picks on a CPU.
_ISA_FLAGS = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile",
              "asimd", "sve", "asimddp")
_FACT_KEYS = ("onnxruntime", "machine", "isa")


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


def modulated_convs(model, slots: Sequence[str]) -> list[str]:
    """Slots of ``slots`` whose folded conv (``<slot>.conv.weight``) the graph holds."""
    names = {i.name for i in model.graph.initializer}
    missing = [s for s in slots if f"{s}.conv.weight" not in names]
    if missing:
        raise ValidationError(f"graph lacks the folded conv initializers of slots {missing[:3]} "
                              "(expected stable names '<slot>.conv.weight'); rebuild the bundle")
    return list(slots)


def affine_graph(model, raw: Mapping[str, np.ndarray], slots: Sequence[str]):
    """Graph surgery for ``affine`` binding: folded conv -> raw conv · scale + shift.

    ``raw`` maps ``<slot>.weight`` to the raw (unfolded) conv weight (fold_params). The
    scale/shift become graph inputs ``<slot>.scale`` / ``<slot>.shift`` of shape [1, C, 1, 1].
    Returns a new ``onnx.ModelProto`` (the input is left untouched).
    """
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    by_weight = {}
    for node in graph.nodes:
        if node.op == "Conv" and len(node.inputs) > 1 and isinstance(node.inputs[1], gs.Constant):
            by_weight[node.inputs[1].name] = node
    for slot in slots:
        conv = by_weight.get(f"{slot}.conv.weight")
        if conv is None:
            raise ValidationError(f"graph has no Conv with weight '{slot}.conv.weight'; rebuild the bundle")
        w = np.ascontiguousarray(raw[f"{slot}.weight"], dtype=np.float32)
        c = w.shape[0]
        out = conv.outputs[0]
        y = gs.Variable(f"{slot}.raw_conv_out", dtype=np.float32)
        scaled = gs.Variable(f"{slot}.scaled", dtype=np.float32)
        scale = gs.Variable(f"{slot}.scale", dtype=np.float32, shape=[1, c, 1, 1])
        shift = gs.Variable(f"{slot}.shift", dtype=np.float32, shape=[1, c, 1, 1])
        conv.inputs = [conv.inputs[0], gs.Constant(f"{slot}.conv.raw_weight", w)]
        conv.outputs = [y]
        graph.nodes.append(gs.Node("Mul", name=f"{slot}/bn_scale", inputs=[y, scale], outputs=[scaled]))
        graph.nodes.append(gs.Node("Add", name=f"{slot}/bn_shift", inputs=[scaled, shift], outputs=[out]))
        graph.inputs += [scale, shift]
    graph.cleanup().toposort()
    new = gs.export_onnx(graph)
    new.ir_version = min(model.ir_version, 10)
    del new.opset_import[:]
    new.opset_import.extend(model.opset_import)
    onnx.checker.check_model(new)
    return new


class OrtEngine:
    """A loaded topology: one base session (``affine``) or a recipe for bound sessions."""

    def __init__(self, topology: str, mode: str, profile, model, slots: Sequence[str],
                 session=None, model_bytes: int = 0) -> None:
        self.topology = topology
        self.mode = mode
        self.weight_kind = "affine" if mode == "affine" else "folded"
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
        """Bind ``weights`` without touching any state another thread may be using."""
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
            # (tests/backends/test_backend_onnxruntime_binding.py catches this).
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
        from onnx import numpy_helper

        model = type(self._model)()
        model.CopyFrom(self._model)
        for init in model.graph.initializer:
            if init.name in weights:
                init.CopyFrom(numpy_helper.from_array(np.asarray(weights[init.name], np.float32), init.name))
        return Bound(_new_session(model.SerializeToString(), _session_options(self._profile)), {})

    def bind(self, weights: Mapping[str, np.ndarray]) -> None:
        """Engine protocol: make ``weights`` the engine's current binding."""
        self._bound = self.prepare(weights)

    # -- running -------------------------------------------------------------------------

    def run(self, images: np.ndarray, bound: Optional[Bound] = None) -> dict[str, np.ndarray]:
        """Run a float32 NCHW batch with ``bound`` (default: the current binding)."""
        b = bound or self._bound
        if b is None:
            raise RuntimeError(f"engine {self.topology}: no weights bound (call bind/prepare first)")
        outs = b.session.run(self.output_names, {INPUT_NAME: images, **b.feeds})
        return dict(zip(self.output_names, outs))

    def memory_bytes(self) -> int:
        """Weights held (graph bytes) times two: ORT keeps a pre-packed copy of conv weights."""
        return 2 * self._bytes

    def close(self) -> None:
        """Drop this engine's references; sessions still held by a ``Bound`` live on until
        the request using them finishes (Python reference counting frees them)."""
        self._session = None
        self._bound = None
        self._model = None


class OnnxRuntimeBackend:
    """Engines for ONNX Runtime on the CPU (see the module docstring for binding modes)."""

    name = "onnxruntime"

    def __init__(self, binding: str = DEFAULT_BINDING) -> None:
        if binding not in BINDING_MODES:
            raise ValidationError(f"binding mode {binding!r} is unknown; expected one of {', '.join(BINDING_MODES)}")
        self.binding = binding
        _ort()

    def device_facts(self) -> dict[str, Any]:
        """See :func:`device_facts`."""
        return device_facts()

    def _graph(self, graph: Path, raw: Optional[Mapping[str, np.ndarray]], slots: Sequence[str]):
        import onnx

        model = onnx.load(str(graph))
        modulated_convs(model, slots)
        if self.binding == "affine":
            if raw is None:
                raise ValueError("affine binding needs the raw conv weights (fold_params)")
            model = affine_graph(model, raw, slots)
        return model

    def compile(self, graph: Path, out_dir: Path, profile, topology: str = "",
                raw_weights: Optional[Mapping[str, np.ndarray]] = None,
                slots: Sequence[str] = ()) -> dict:
        """Cache the ORT_ENABLE_ALL-optimized ``affine`` graph under ``out_dir`` (atomic).

        Returns ``{file, sha256}`` with ``file`` relative to ``out_dir``. Only ``affine``
        engines are cached on disk (see the module docstring).
        """
        if self.binding != "affine":
            raise ValueError("only affine engines are cached on disk")
        model = self._graph(Path(graph), raw_weights, slots)
        name = f"{topology or Path(graph).stem}.ort.onnx"
        target = Path(out_dir) / name
        with atomic_path(target) as tmp:
            _new_session(model.SerializeToString(), _session_options(profile, "all", tmp))
        return {"file": name, "sha256": sha256_file(target)}

    def load(self, graph: Path, artifact: Optional[dict], profile, topology: str,
             raw_weights: Optional[Mapping[str, np.ndarray]] = None, slots: Sequence[str] = ()) -> OrtEngine:
        """Load a topology's engine; ``artifact`` = ``{"path": cached optimized graph}`` or None.

        ``slots`` are the topology's modulated BN slots; ``raw_weights`` their fold_params
        (needed by ``affine``). A cached optimized graph is loaded with optimizations off
        (they were applied when it was written).
        """
        size = Path(graph).stat().st_size
        if self.binding == "affine" and artifact is not None:
            sess = _new_session(str(artifact["path"]), _session_options(profile, "none"))
            return OrtEngine(topology, "affine", profile, None, slots, session=sess, model_bytes=size)
        model = self._graph(Path(graph), raw_weights, slots)
        if self.binding == "affine":
            sess = _new_session(model.SerializeToString(), _session_options(profile, "all"))
            return OrtEngine(topology, "affine", profile, None, slots, session=sess, model_bytes=size)
        return OrtEngine(topology, self.binding, profile, model, slots, model_bytes=size)
