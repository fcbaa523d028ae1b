"""Build one TensorRT engine per topology from its ONNX graph, for a device profile.

``Builder`` -> ``create_network`` (strongly typed: the graph's own types decide precision,
which is the one path TensorRT 10 on JetPack 6 and TensorRT 11 share) -> ``OnnxParser`` ->
``BuilderConfig`` (workspace pool, an optimization profile for the dynamic batch from the
device profile, builder optimization level, ``REFIT`` when the profile is refittable,
DLA core with GPU fallback when the profile names one, one timing cache per device) ->
``build_serialized_network`` -> engine and JSON sidecar, both written atomically.

The pure-python parts (batch shapes, graph selection per precision, network flags) are
separate functions so they are tested without TensorRT.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from dymu_rt.backends.precision import convert_fp16, graph_precision, quantize_int8
from dymu_rt.backends.tensorrt.facts import import_tensorrt, write_sidecar
from dymu_rt.bundle import layout as B
from dymu_rt.bundle.sections import int8_ranges
from dymu_rt.core.errors import BundleError, ValidationError
from dymu_rt.core.io import atomic_write_bytes, sha256_file

_LOGGER: dict[int, Any] = {}


def get_logger(trt):
    """One ``trt.Logger`` (WARNING) per process, shared by builders, runtimes and refitters."""
    key = id(trt)
    if key not in _LOGGER:
        _LOGGER[key] = trt.Logger(trt.Logger.WARNING)
    return _LOGGER[key]


def network_flags(trt) -> int:
    """``STRONGLY_TYPED`` where the enum has it (TensorRT 10); 0 where strong typing is the
    only mode and the flag is gone (TensorRT 11)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def profile_shapes(shape, profile, name: str = "image") -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) shapes of a network input for the profile's batch range.

    ``shape`` is the network's input shape with -1 for dynamic dimensions; only dimension 0
    (the batch) may be dynamic. A fixed batch must equal the whole profile range.
    """
    shape = tuple(int(d) for d in shape)
    if not shape:
        raise ValidationError(f"input '{name}' is a scalar; expected an NCHW image batch")
    dynamic = [i for i, d in enumerate(shape) if d < 0 and i > 0]
    if dynamic:
        raise ValidationError(f"input '{name}' has dynamic dimensions {dynamic} besides the batch; "
                              "export the graph with a fixed input size")
    rest = shape[1:]
    lo, opt, hi = profile.batch_min, profile.batch_opt, profile.batch_max
    if shape[0] >= 0 and not (lo == opt == hi == shape[0]):
        raise ValidationError(f"input '{name}' has a fixed batch {shape[0]} but profile '{profile.name}' asks "
                              f"for batch {lo}..{hi}; export with a dynamic batch")
    if profile.dla_core >= 0 and not lo == opt == hi:
        # parse_profile refuses such profiles; this guards profiles constructed in code.
        raise ValidationError(f"profile '{profile.name}': DLA needs batch_min == batch_opt == batch_max "
                              f"(DLA has no dynamic shapes), got {lo}..{hi}")
    return (lo,) + rest, (opt,) + rest, (hi,) + rest


def parser_report(parser, graph) -> str:
    """One line describing every ONNX parser error (node index, op, name, description)."""
    parts = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        try:
            where = f"node {err.node()}"
            op = err.node_operator() if hasattr(err, "node_operator") else ""
            nm = err.node_name() if hasattr(err, "node_name") else ""
            if op or nm:
                where += f" ({op} '{nm}')"
            parts.append(f"{where}: {err.desc()}")
        except Exception:  # older bindings: the error's own str is the best we have
            parts.append(str(err))
    detail = "; ".join(parts) or "no details reported"
    return f"TensorRT could not parse {graph}: {detail}"


def timing_cache_path(engines_root: str | Path, facts: Mapping[str, Any]) -> Path:
    """One timing cache per device (GPU, compute capability, TensorRT version), shared by
    all builds of a bundle: ``engines/tensorrt/timing_<gpu>_sm<cc>_trt<version>.cache``."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", str(facts["gpu"])).strip("-").lower()
    cc = str(facts["compute_capability"]).replace(".", "")
    return Path(engines_root) / f"timing_{gpu}_sm{cc}_trt{facts['tensorrt']}.cache"


def load_timing_cache(config, path: Optional[Path]):
    """Attach the timing cache at ``path`` (empty when absent or unreadable) to ``config``."""
    data = b""
    if path is not None and Path(path).is_file():
        data = Path(path).read_bytes()
    cache = config.create_timing_cache(data)
    if cache is None and data:          # corrupt or foreign file: start afresh, it is a cache
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def save_timing_cache(config, path: Optional[Path]) -> None:
    """Write the config's (grown) timing cache back atomically."""
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        atomic_write_bytes(path, bytes(memoryview(cache.serialize())))


def configure(trt, builder, network, config, profile) -> dict[str, tuple]:
    """Apply a device profile to a builder config; returns {input: (min, opt, max)}."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(profile.workspace_mb) << 20)
    opt = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shapes[inp.name] = profile_shapes(tuple(inp.shape), profile, inp.name)
        opt.set_shape(inp.name, *shapes[inp.name])
    config.add_optimization_profile(opt)
    config.builder_optimization_level = int(profile.builder_optimization_level)
    if profile.refittable:
        config.set_flag(trt.BuilderFlag.REFIT)
    if profile.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(profile.dla_core)
        if profile.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return shapes


def build_serialized(graph: str | Path, profile, timing_cache: Optional[Path] = None, trt=None) -> bytes:
    """Parse ``graph`` and build a serialized engine (bytes) for ``profile``."""
    trt = trt or import_tensorrt()
    logger = get_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data next to the graph, parse(bytes) would not.
    if not parser.parse_from_file(str(graph)):
        raise BundleError(parser_report(parser, graph))
    config = builder.create_builder_config()
    configure(trt, builder, network, config, profile)
    load_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT could not build an engine from {graph} for profile '{profile.name}' "
                          "(see the TensorRT log above; a larger [memory] workspace_mb may help)")
    save_timing_cache(config, timing_cache)
    return bytes(memoryview(serialized))


def build_engine(graph: str | Path, engine_path: str | Path, profile, facts: Mapping[str, Any],
                 timing_cache: Optional[Path] = None, precision: str = "fp32", trt=None) -> dict[str, Any]:
    """Build, then write ``engine_path`` and its sidecar atomically; returns the sidecar record."""
    t0 = time.perf_counter()
    data = build_serialized(graph, profile, timing_cache, trt)
    engine_path = Path(engine_path)
    atomic_write_bytes(engine_path, data)
    record = {**dict(facts), "profile": profile.to_dict(), "precision": precision,
              "refittable": bool(profile.refittable), "graph": Path(graph).name,
              "graph_sha256": sha256_file(graph), "engine_sha256": sha256_file(engine_path),
              "build_seconds": round(time.perf_counter() - t0, 3)}
    write_sidecar(engine_path, record)
    return record


def prepare_graph(graph: str | Path, precision: str, work_dir: str | Path, topology: str,
                  manifest=None) -> Path:
    """The graph to build for ``precision`` (precision lives in the graph, DESIGN.md §6).

    fp32: the bundle graph. fp16: converted next to the engines (``<topology>.fp16.onnx``).
    int8: the graph itself when it already is Q/DQ, else the symmetric-int8 Q/DQ graph derived
    (next to the engines, ``<topology>.int8.onnx``) from the tensor ranges ``dymu-rt
    calibrate`` recorded in the bundle (``manifest``: the bundle's, read from the graph's
    bundle when not given; BundleError with a hint when there is none).
    """
    import onnx

    graph = Path(graph)
    have = graph_precision(onnx.load(str(graph), load_external_data=False))
    if have == precision:
        return graph
    if have != "fp32":
        raise ValidationError(f"graph {graph} is {have}; profile precision '{precision}' needs an FP32 graph "
                              "to start from")
    if precision == "fp16":
        out = Path(work_dir) / f"{topology}.fp16.onnx"
        convert_fp16(graph, out)
        return out
    if precision == "int8":
        root = graph.parent.parent
        if manifest is None:
            if not B.is_bundle(root):
                raise BundleError(f"graph {graph} is FP32 and not inside a bundle; INT8 needs a Q/DQ graph from "
                                  "`dymu-rt calibrate`")
            manifest = B.read_manifest(root)
        # Store once: the bundle keeps the calibrated ranges only; the symmetric-int8 Q/DQ graph
        # TensorRT takes (the folded graph: refit binds per-channel weight scales) is derived
        # here from them and the graph's weights (compile/calibrate.py).

        ranges = int8_ranges(root, manifest, topology, check=True)
        out = Path(work_dir) / f"{topology}.int8.onnx"
        quantize_int8(graph, out, None, cache_path=ranges, activations="int8")
        return out
    raise ValidationError(f"precision '{precision}' is not valid; expected fp32, fp16 or int8")
