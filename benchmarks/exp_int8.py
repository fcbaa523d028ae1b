"""Experiment (issue 14): how INT8 pays on this CPU, and how an INT8 preference switch stays cheap.

    python benchmarks/exp_int8.py BUNDLE [--topology ID] [--calib 4] [--rounds 5] [--threads 1] [--json out.json]

One topology graph of ``BUNDLE`` (default: the one with most grid points), quantized with
ONNX Runtime's ``quantize_static`` (MinMax, ``--calib`` procedural scenes) in several forms,
each timed at batch 1 in the same process, interleaved round-robin, against the FP32 graph:

``fp32``             the bundle's folded graph (what the FP32 runtime runs per preference
                     with ``session`` binding; the ``affine`` default adds a Mul/Add per slot)
``fp32-affine``      raw convs + per-channel BN scale/shift as runtime inputs (FP32 default)
``fp32-affine-ext``  the same at ORT_ENABLE_EXTENDED (no NCHWc layout: the level at which
                     sessions can share one copy of the weights, exp_ort_sharing.py)
``qdq-u8s8``         folded graph, QDQ, uint8 activations / int8 per-channel weights (today's
                     ORT INT8 path: a new session per preference)
``qdq-s8s8``         the same with symmetric int8 activations (the graph TensorRT takes)
``qop-u8s8``         QOperator format (QLinearConv nodes written by the quantizer)
``qdq-affine-u8s8``  the affine graph with only its Conv nodes quantized: raw conv weights
                     per-channel int8 (preference-independent), conv output quantized, the
                     preference's BN scale/shift applied in float on the dequantized conv
                     output as runtime inputs -> a preference switch is new feeds, no session
``qdq-affine-s8s8``  the same with symmetric activations (TensorRT form of the affine graph)

For each: median latency, ratio FP32/variant (speed-up), and the max error of every output
relative to that output's FP32 range (same input, anchor preference). The switch cost of the
affine INT8 graph is measured too: feeds for another preference's BN affine (the weight
hypernet's deltas) + one inference vs one inference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _so(ort, threads: int, extended: bool = False):
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if extended
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


class Reader:
    def __init__(self, feeds: list[dict]) -> None:
        self.feeds, self.i = feeds, 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def rewind(self):
        self.i = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--topology")
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="fp32,fp32-affine,fp32-affine-ext,qdq-u8s8,qdq-s8s8,qop-u8s8,qdq-affine-u8s8,qdq-affine-s8s8")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from dymu_rt.backends.affine import affine_graph
    from dymu_rt.data.synth import SynthDataset
    from dymu_rt.runtime.binding import load_fold_params, raw_weights, slot_weights

    ort.set_default_logger_severity(3)
    CalibrationDataReader.register(Reader)
    m = json.loads((args.bundle / "manifest.json").read_text())
    tid = args.topology or max(m["topologies"], key=lambda t: m["topologies"][t]["n_points"])
    topo = m["topologies"][tid]
    graph = args.bundle / topo["file"]
    slots = topo["bn_slots"]
    params = load_fold_params(args.bundle / m["controller"]["fold_params"]["file"])
    h, w = m["preprocessing"]["input_size"]
    ds = SynthDataset(args.calib + 1, size=(h, w), seed=0)
    images = [ds[i]["image"].numpy()[None] for i in range(args.calib + 1)]
    x = images[-1]
    zero = np.zeros(int(m["bn_delta_size"]), np.float32)
    aff = slot_weights(params, m["bn_layout"], zero, m["bn_eps"], slots, "affine")
    aff_feeds = {k: v.reshape(1, -1, 1, 1) for k, v in aff.items()}

    variants = args.variants.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="dymu-int8-exp-"))
    fp32_model = onnx.load(str(graph))
    affine_model = affine_graph(fp32_model, raw_weights(params, slots), slots)
    affine_path = tmp / "affine.onnx"
    onnx.save(affine_model, str(affine_path), save_as_external_data=True, location="affine.bin")
    folded_path = tmp / "folded.onnx"
    onnx.save(fp32_model, str(folded_path), save_as_external_data=True, location="folded.bin")
    paths = {"fp32": folded_path, "fp32-affine": affine_path, "fp32-affine-ext": affine_path}
    extra = {"fp32-affine": aff_feeds, "fp32-affine-ext": aff_feeds}
    quant_s = {}
    for v in variants:
        if v in paths:
            continue
        affine = "affine" in v
        src = affine_path if affine else folded_path
        sym = "s8s8" in v
        feeds = [{"image": im, **(aff_feeds if affine else {})} for im in images[:-1]]
        cache = tmp / f"ranges-{'affine' if affine else 'folded'}.json"
        t = time.perf_counter()
        quantize_static(
            str(src), str(tmp / f"{v}.onnx"), None if cache.is_file() else Reader(feeds),
            quant_format=QuantFormat.QOperator if v.startswith("qop") else QuantFormat.QDQ,
            op_types_to_quantize=["Conv"] if affine else None,
            per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8 if sym else QuantType.QUInt8, weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": sym, "WeightSymmetric": True, "QuantizeBias": False},
            calibration_cache_path=str(cache))
        quant_s[v] = time.perf_counter() - t
        paths[v] = tmp / f"{v}.onnx"
        if affine:
            extra[v] = aff_feeds
        print(f"quantized {v} in {quant_s[v]:.1f} s", flush=True)

    sessions, ops = {}, {}
    for v in variants:
        so = _so(ort, args.threads, extended=v.endswith("-ext"))
        so.optimized_model_filepath = str(tmp / f"{v}.opt.onnx")
        sessions[v] = ort.InferenceSession(str(paths[v]), sess_options=so, providers=["CPUExecutionProvider"])
        opt = onnx.load(str(tmp / f"{v}.opt.onnx"), load_external_data=False)
        counts: dict[str, int] = {}
        for n in opt.graph.node:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        ops[v] = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])
    names = [o.name for o in sessions["fp32"].get_outputs()]
    run = {v: (lambda v=v: sessions[v].run(names, {"image": x, **extra.get(v, {})})) for v in variants}
    ref = dict(zip(names, run["fp32"]()))
    err = {}
    for v in variants:
        out = dict(zip(names, run[v]()))
        err[v] = max(float(np.abs(out[k] - ref[k]).max() / (np.abs(ref[k]).max() + 1e-12)) for k in names)
    samples = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            t = time.perf_counter()
            run[v]()
            samples[v].append(1e3 * (time.perf_counter() - t))
    med = {v: statistics.median(s) for v, s in samples.items()}

    switch = {}
    for v in [v for v in variants if "affine" in v and v.startswith("qdq")]:
        # Another preference: the weight hypernet's deltas -> new scale/shift feeds, same session.
        from dymu_rt.runtime.controller import Controller

        ctrl = Controller(args.bundle / m["controller"]["edge_hypernet"]["file"],
                          args.bundle / m["controller"]["weight_hypernet"]["file"], int(m["num_layers"]),
                          len(m["tasks"]), int(m["bn_delta_size"]), m.get("topology_salt", ""))
        ms = []
        for r, c in [((0.6, 0.2, 0.2), 0.3), ((0.2, 0.2, 0.6), 0.7)] * 3:
            t = time.perf_counter()
            d = ctrl.deltas(r, c)
            a = slot_weights(params, m["bn_layout"], d, m["bn_eps"], slots, "affine")
            feeds = {k: v2.reshape(1, -1, 1, 1) for k, v2 in a.items()}
            ms.append(1e3 * (time.perf_counter() - t))
        switch[v] = statistics.median(ms)

    res = {"bundle": str(args.bundle), "topology": tid, "gmacs": topo["gmacs"], "threads": args.threads,
           "onnxruntime": ort.__version__, "latency_ms_median": med,
           "speedup_vs_fp32": {v: med["fp32"] / med[v] for v in variants},
           "max_rel_err_vs_fp32": err, "quantize_s": quant_s, "optimized_ops": ops,
           "switch_ms_new_feeds (hypernet + affine)": switch}
    for v in variants:
        print(f"{v:18s} {med[v]:9.1f} ms  speed-up {med['fp32'] / med[v]:5.2f}x  max rel err {err[v]:.4f}  "
              f"ops {ops[v]}")
    print("switch:", switch)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
