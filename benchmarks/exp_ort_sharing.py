"""Experiment (issue 14): which ONNX Runtime mechanism lets K sessions hold one copy of weights.

    python benchmarks/exp_ort_sharing.py BUNDLE [--k 8] [--threads 1] [--json out.json]

Every mode runs in its own fresh subprocess (RSS is per process), creates K sessions of
distinct topologies of ``BUNDLE`` (cycling when the bundle has fewer), runs one inference in
each, and reports the process RSS (``/proc/self/status`` VmRSS) after 1 and after K sessions,
plus the median batch-1 latency of the first session (5 runs) and its creation time.

Modes (the graphs are the bundle's FP32 graphs; their tensors are external in weights.bin):

``path``          ``InferenceSession(path)`` at ORT_ENABLE_ALL: ORT reads its own copy of
                  every tensor and makes NCHWc-reordered copies of conv weights.
``shared-ext``    weights.bin read once into one numpy buffer; every session gets the
                  tensors it references as OrtValues over that buffer
                  (``SessionOptions.add_external_initializers``), ORT_ENABLE_ALL.
``shared-ext-extended``  the same at ORT_ENABLE_EXTENDED (no NCHWc layout transformer).
``shared-ext-noprepack`` ``shared-ext`` plus ``session.disable_prepacking``.
``shared-init``   every session overrides every external initializer with
                  ``SessionOptions.add_initializer`` of the one shared OrtValue (zero-copy view
                  of the memory-mapped weights.bin), ORT_ENABLE_EXTENDED, prepacking off; the
                  graph is loaded by path (its external data is then never read).
``shared-init-all`` the same at ORT_ENABLE_ALL (NCHWc ignores the overrides of conv weights
                  and copies them: the contrast).
``+env`` suffix  the same, with every session drawing activations from one arena registered
                  in the ORT environment (``session.use_env_allocators``, memory pattern off)
                  instead of a per-session arena sized for its own plan.
``preopt-shared`` graphs optimized offline at ORT_ENABLE_ALL (NCHWc weights reordered once,
                  written as external data), their tensors deduplicated by content across
                  topologies into one buffer, sessions created with optimizations off and
                  ``add_external_initializers`` over that buffer.

The Python API has no ``PrepackedWeightsContainer`` (C/C++/C# only in onnxruntime 1.32), so
that mechanism is not measurable from here; ``add_initializer`` is not a candidate for FP32
conv weights (not honoured at ORT_ENABLE_ALL, docs/INTERFACES.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("path", "shared-ext", "shared-ext-extended", "shared-ext-noprepack", "preopt-shared",
         "path+env", "shared-ext+env", "preopt-shared+env", "shared-init", "shared-init-all")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _external_refs(model):
    """(initializer name, offset, length, dtype, dims) of every external initializer."""
    from onnx import TensorProto, helper

    out = []
    for init in model.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in init.external_data}
        out.append((init.name, info.get("location"), int(info.get("offset", 0)), int(info["length"]),
                    helper.tensor_dtype_to_np_dtype(init.data_type), tuple(init.dims)))
    return out


def _options(ort, threads: int, level: str, noprepack: bool = False, env: bool = False):
    so = ort.SessionOptions()
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if noprepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if env:
        so.add_session_config_entry("session.use_env_allocators", "1")
        so.enable_mem_pattern = False
    return so


def preoptimize(graphs: list[Path], out_dir: Path, threads: int) -> list[Path]:
    """Write each graph optimized at ORT_ENABLE_ALL with its tensors external (own file)."""
    import onnxruntime as ort

    out = []
    for g in graphs:
        dst = out_dir / f"{g.stem}.opt.onnx"
        so = _options(ort, threads, "all")
        so.optimized_model_filepath = str(dst)
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{g.stem}.opt.bin")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "128")
        ort.InferenceSession(str(g), sess_options=so, providers=["CPUExecutionProvider"])
        out.append(dst)
    return out


def child(mode: str, graphs: list[str], threads: int, k: int) -> dict:
    import onnx
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    env = mode.endswith("+env")
    mode = mode.removesuffix("+env")
    if env:
        mi = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(mi, ort.OrtArenaCfg(0, -1, -1, -1))
    base = rss_mb()
    graphs = [Path(g) for g in graphs]
    shape = None
    keep = []
    values: dict = {}           # (file, offset, length) -> OrtValue, shared by every session
    buffers: dict = {}          # file -> the one numpy copy of it

    def value(folder: Path, loc: str, off: int, length: int, dtype, dims, mmap: bool = False):
        key = (str(folder / loc), off, length)
        if key not in values:
            if key[0] not in buffers:
                buffers[key[0]] = (np.memmap(key[0], dtype=np.uint8, mode="r") if mmap
                                   else np.fromfile(key[0], dtype=np.uint8))
            arr = buffers[key[0]][off:off + length].view(dtype).reshape(dims)
            values[key] = ort.OrtValue.ortvalue_from_numpy(arr)
        return values[key]

    def make(g: Path):
        if mode == "path":
            return ort.InferenceSession(str(g), sess_options=_options(ort, threads, "all", env=env),
                                        providers=["CPUExecutionProvider"])
        if mode.startswith("shared-init"):
            so = _options(ort, threads, "all" if mode == "shared-init-all" else "extended", noprepack=True, env=env)
            model = onnx.load(str(g), load_external_data=False)
            for r in _external_refs(model):
                so.add_initializer(r[0], value(g.parent, *r[1:], mmap=True))
            return ort.InferenceSession(str(g), sess_options=so, providers=["CPUExecutionProvider"])
        level = {"shared-ext-extended": "extended", "preopt-shared": "none"}.get(mode, "all")
        so = _options(ort, threads, level, noprepack=mode == "shared-ext-noprepack", env=env)
        model = onnx.load(str(g), load_external_data=False)
        refs = _external_refs(model)
        so.add_external_initializers([r[0] for r in refs], [value(g.parent, *r[1:]) for r in refs])
        return ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])

    rss, create_ms, lat = [], [], []
    for i in range(k):
        t = time.perf_counter()
        s = make(graphs[i % len(graphs)])
        create_ms.append(1e3 * (time.perf_counter() - t))
        if shape is None:
            shape = [1 if not isinstance(d, int) else d for d in s.get_inputs()[0].shape]
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
        feeds = {"image": x}
        for inp in s.get_inputs()[1:]:
            feeds[inp.name] = np.ones([1 if not isinstance(d, int) else d for d in inp.shape], np.float32)
        s.run(None, feeds)
        if i == 0:
            for _ in range(5):
                t = time.perf_counter()
                s.run(None, feeds)
                lat.append(1e3 * (time.perf_counter() - t))
        keep.append(s)
        rss.append(rss_mb())
    return {"mode": mode + ("+env" if env else ""), "rss_base_mb": base, "rss_mb": rss, "create_ms": create_ms,
            "latency_ms": statistics.median(lat), "k": k, "graphs": len(set(graphs[:k]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--graphs", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.graphs, args.threads, args.k)))
        return
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    tops = sorted(manifest["topologies"], key=lambda t: -manifest["topologies"][t]["n_points"])[:args.k]
    graphs = [args.bundle / manifest["topologies"][t]["file"] for t in tops]
    results = []
    with tempfile.TemporaryDirectory(prefix="dymu-share-") as tmp:
        opt = None
        for mode in args.modes.split(","):
            gs = graphs
            if mode.startswith("preopt-shared"):
                if opt is None:
                    opt = preoptimize(graphs, Path(tmp), args.threads)
                gs = opt
            cmd = [sys.executable, __file__, "--child", mode, "--k", str(args.k), "--threads", str(args.threads),
                   "--graphs", *map(str, gs)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if out.returncode != 0:
                results.append({"mode": mode, "error": out.stderr.strip().splitlines()[-1:]})
            else:
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[-1]
            if "error" in r:
                print(f"{mode:24s} error {r['error']}")
            else:
                print(f"{mode:24s} rss1 {r['rss_mb'][0]:8.1f} MiB  rss{r['k']} {r['rss_mb'][-1]:8.1f} MiB  "
                      f"ratio {r['rss_mb'][-1] / r['rss_mb'][0]:5.2f}  create {statistics.median(r['create_ms']):7.0f} ms"
                      f"  latency {r['latency_ms']:8.1f} ms  ({r['graphs']} distinct graphs)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "threads": args.threads, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
