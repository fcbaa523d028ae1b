"""INT8 (Q/DQ) and FP16 vs FP32 in ONNX Runtime on the CPU: latency ratios and output error.

Takes one topology graph (``.onnx``) or a bundle (its first topology, or ``--topology``),
quantizes it with a calibration set (``--synth N`` procedural scenes or ``--images DIR``;
random images when neither is given), converts it to FP16, then times all three in the same
process, interleaved round-robin so that machine noise hits every variant alike, and
reports median latency ratios and the max output error relative to each FP32 output's
range. Rerun: ``python benchmarks/bench_precision.py runs/synth-nyu/bundle --synth 32``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _graph(path: Path, topology: str | None) -> tuple[Path, tuple[int, int]]:
    if path.suffix == ".onnx":
        import onnx

        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        return path, (dims[2].dim_value, dims[3].dim_value)
    from dymu_rt.compile.bundle import read_manifest

    m = read_manifest(path)
    tid = topology or sorted(m["topologies"])[0]
    return path / m["topologies"][tid]["file"], tuple(m["preprocessing"]["input_size"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="topology graph (.onnx) or bundle directory")
    ap.add_argument("--topology", default=None)
    ap.add_argument("--synth", type=int, default=None, help="calibrate on N procedural scenes")
    ap.add_argument("--images", type=Path, default=None, help="calibrate on a folder of images")
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--activations", default="int8", choices=["int8", "uint8"],
                    help="int8: symmetric, TensorRT-compatible (default); uint8: ORT x86 fast path")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from dymu_rt.backends.calibration import image_folder_set, synth_set
    from dymu_rt.backends.precision import ArrayReader, convert_fp16, quantize_int8

    graph, size = _graph(args.path, args.topology)
    rng = np.random.default_rng(0)
    if args.images is not None:
        calib = image_folder_set(args.images, size).images
    elif args.synth is not None:
        calib = synth_set(args.synth, size).images
    else:
        calib = rng.random((16, 3, *size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"fp32": graph,
                    "int8": quantize_int8(graph, Path(tmp) / "int8.onnx", ArrayReader(calib), args.method,
                                             activations=args.activations),
                    "fp16": convert_fp16(graph, Path(tmp) / "fp16.onnx")}
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in variants.items()}
    # evaluation images differ from calibration ones (held out), like a deployment would see
    x = (synth_set(args.batch, size, seed=1).images if args.synth is not None
         else rng.random((args.batch, 3, *size), dtype=np.float32))
    outs = {k: s.run(None, {"image": x}) for k, s in sess.items()}
    names = [o.name for o in sess["fp32"].get_outputs()]
    times = {k: [] for k in sess}
    for _ in range(5):
        for s in sess.values():
            s.run(None, {"image": x})
    for _ in range(args.rounds):
        for k, s in sess.items():
            t0 = time.perf_counter()
            s.run(None, {"image": x})
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    err = {k: {n: float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-6))
               for n, o, r in zip(names, outs[k], outs["fp32"])} for k in ("int8", "fp16")}
    report = {"graph": str(graph), "input": [args.batch, 3, *size], "threads": args.threads,
              "calibration": {"method": args.method, "activations": args.activations, "images": int(len(calib))},
              "median_ms": {k: round(v, 4) for k, v in med.items()},
              "latency_ratio_vs_fp32": {k: round(med[k] / med["fp32"], 3) for k in ("int8", "fp16")},
              "max_rel_error_vs_fp32": err}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
