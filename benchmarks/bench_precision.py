"""INT8 vs FP32 with the ONNX Runtime backend: per-task accuracy change and latency ratio.

    python benchmarks/bench_precision.py BUNDLE [--n 64] [--out bench_precision.json]

Runs the product path (``Runtime.open`` with profile ``x86-64-cpu`` and ``x86-64-cpu-int8``)
on ``--n`` labelled procedural validation scenes (``dymu_rt.data.synth``, split ``val``,
never the calibration scenes) at several preferences and scores every output with the task
library's meters (``dymu_rt.tasks``): mIoU for segmentation, mean angle error (degrees) for
normals, mean absolute error for depth (other kinds: their primary metric). Reports per task
the metric at FP32, at INT8 and the change, for:

* ``int8`` — what the ONNX Runtime backend runs on this CPU (x86: uint8 activations, U8S8);
* ``int8-trt`` — the symmetric int8 Q/DQ graph shared with TensorRT (S8S8 here), so the
  accuracy a TensorRT INT8 engine starts from is measured on CPU too.

Latency: batch 1, one preference, all variants timed in the same process, interleaved
round-robin so machine noise hits each alike; median ms and the ratio to FP32. FP16 is not
measured: the ONNX Runtime backend refuses it on CPU (no speed-up; see
``dymu_rt.backends.onnxruntime``).

The bundle needs INT8 graphs (``dymu-rt calibrate``); when it has none they are made here
from ``--calib N`` procedural training scenes. The shipped default bundle (read-only) and
any read-only bundle are copied to a temporary folder first; nothing is written into them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PREFERENCES = [([0.6, 0.2, 0.2], 0.5), ([0.2, 0.6, 0.2], 0.5), ([0.2, 0.2, 0.6], 0.5),
               ([1 / 3, 1 / 3, 1 / 3], 0.0), ([1 / 3, 1 / 3, 1 / 3], 1.0)]
# kind -> (metric, higher is better) reported per task
METRICS = {"segmentation": "miou", "parts": "miou", "normals": "mean", "depth": "abs_err"}


def _prefs(n_tasks: int) -> list[tuple[list[float], float]]:
    if n_tasks == 3:
        return PREFERENCES
    u = [1 / n_tasks] * n_tasks
    return [(u, 0.0), (u, 0.5), (u, 1.0)]


def _bundle(path: Path, tmp: Path, calib: int, method: str) -> tuple[Path, str]:
    from dymu_rt.compile.calibrate import calibrate_bundle
    from dymu_rt.bundle.layout import read_manifest
    from dymu_rt.bundle.layout import is_shipped_bundle

    note = "in place"
    if is_shipped_bundle(path) or not os.access(path, os.W_OK):
        dst = tmp / "bundle"
        shutil.copytree(path, dst)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)
        path, note = dst, f"copied to {dst} (source read-only)"
    if read_manifest(path).int8 is None:
        res = calibrate_bundle(path, synth=calib, method=method, progress=False)
        note += f"; calibrated here on {res['calibration']['count']} procedural scenes ({method})"
    return path, note


def _val_set(manifest: dict, n: int, seed: int):
    """Preprocessed images [n, 3, H, W] and per-task (targets, masks) torch tensors."""
    import torch

    from dymu_rt.compile.calibrate import _normalize
    from dymu_rt.data.synth import SynthDataset

    size = tuple(manifest["preprocessing"]["input_size"])
    ds = SynthDataset(n, size=size, seed=seed, split="val", tasks=[t["name"] for t in manifest["tasks"]])
    samples = [ds[i] for i in range(n)]
    images = _normalize(np.stack([s["image"].numpy() for s in samples]).astype(np.float32), manifest["preprocessing"])
    targets = {t["name"]: torch.stack([s["targets"][t["name"]] for s in samples]) for t in manifest["tasks"]}
    masks = {t["name"]: torch.stack([s["masks"][t["name"]] for s in samples]) for t in manifest["tasks"]}
    return images, targets, masks


def _score(rt, tasks, images, targets, masks, batch: int) -> dict[str, float]:
    import torch

    meters = {t.name: t.new_meter() for t in tasks}
    for i in range(0, len(images), batch):
        out = rt.infer(images[i:i + batch])
        for t in tasks:
            meters[t.name].update(torch.from_numpy(out[t.name]), targets[t.name][i:i + batch],
                                  masks[t.name][i:i + batch])
    res = {}
    for t in tasks:
        metric = METRICS.get(t.kind, t.primary_metric)
        res[t.name] = float(meters[t.name].compute()[metric])
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="bundle directory (e.g. dymu_rt/assets/default_bundle)")
    ap.add_argument("--n", type=int, default=64, help="labelled validation scenes (default 64)")
    ap.add_argument("--calib", type=int, default=64, help="calibration scenes if the bundle has no INT8 graphs")
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--seed", type=int, default=0, help="seed of the validation scenes")
    ap.add_argument("--rounds", type=int, default=100, help="timed rounds per variant (batch 1)")
    ap.add_argument("--out", type=Path, default=Path("bench_precision.json"))
    args = ap.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        ap.error("--n and --rounds must be >= 1")

    import onnxruntime as ort

    from dymu_rt.runtime.runtime import Runtime
    from dymu_rt.tasks import make_task
    from dymu_rt.core.kinds import LABELLED_KINDS

    with tempfile.TemporaryDirectory(prefix="dymu-bench-precision-") as tmp:
        bundle, note = _bundle(args.bundle, Path(tmp), args.calib, args.method)
        rts = {"fp32": Runtime.open(bundle, profile="x86-64-cpu", cache_engines=False),
               "int8": Runtime.open(bundle, profile="x86-64-cpu-int8")}
        trt_form = Runtime.open(bundle, profile="x86-64-cpu-int8")
        trt_form.backend.int8_activations = "int8"          # before any engine is loaded
        if rts["int8"].backend.int8_activations != "int8":
            rts["int8-trt"] = trt_form
        manifest = rts["fp32"].manifest.to_dict()
        tasks = [make_task(t["kind"], t["name"], num_classes=t["out_channels"] if t["kind"] in LABELLED_KINDS else None)
                 for t in manifest["tasks"]]          # torch tasks: the meters score the outputs
        images, targets, masks = _val_set(manifest, args.n, args.seed)
        batch = rts["fp32"].profile.batch_max

        rows = []
        for r, c in _prefs(len(tasks)):
            row = {"r": [round(v, 3) for v in r], "c": c}
            for name, rt in rts.items():
                info = rt.set_preference(r, c, normalize=True)
                row[name] = _score(rt, tasks, images, targets, masks, batch)
                row["topology"] = info["topology"]
            rows.append(row)

        r0, c0 = _prefs(len(tasks))[0]
        x1 = images[:1]
        times = {k: [] for k in rts}
        for rt in rts.values():
            rt.set_preference(r0, c0, normalize=True)
            for _ in range(10):
                rt.infer(x1)
        for _ in range(args.rounds):
            for k, rt in rts.items():
                t0 = time.perf_counter()
                rt.infer(x1)
                times[k].append(time.perf_counter() - t0)
        switch = {}
        for k, rt in rts.items():           # switch cost within one cached topology: median of 6
            base, cost = rt.stats()["topology"], []
            for i in range(6):
                t0 = time.perf_counter()
                info = rt.set_preference(r0, c0 + (0.01 if i % 2 == 0 else 0.0), normalize=True)
                cost.append(time.perf_counter() - t0)
            switch[k] = round(1e3 * statistics.median(cost), 2) if info["topology"] == base else None
        threads = rts["fp32"].profile.threads
        variants = list(rts)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    directions = {t.name: t.metric_directions[METRICS.get(t.kind, t.primary_metric)] for t in tasks}
    summary = {}
    for t in tasks:
        entry = {"metric": METRICS.get(t.kind, t.primary_metric), "higher_is_better": directions[t.name],
                 "fp32": statistics.fmean(r["fp32"][t.name] for r in rows)}
        for v in variants[1:]:
            entry[v] = statistics.fmean(r[v][t.name] for r in rows)
            entry[f"{v}_change"] = entry[v] - entry["fp32"]
        summary[t.name] = entry
    report = {
        "bundle": str(args.bundle), "bundle_used": note, "onnxruntime": ort.__version__,
        "validation": {"kind": "synth", "split": "val", "n": args.n, "seed": args.seed},
        "variants": {"fp32": "bundle graphs", "int8": f"Q/DQ, {rts['int8'].backend.int8_activations} activations "
                     "(what the onnxruntime backend runs here)",
                     **({"int8-trt": "Q/DQ, symmetric int8 activations (the TensorRT graph)"} if "int8-trt" in rts
                        else {})},
        "fp16": "not run: the onnxruntime backend refuses fp16 on CPU (no speed-up over fp32)",
        "per_task_mean_over_preferences": summary, "per_preference": rows,
        "latency": {"batch": 1, "threads": threads or os.cpu_count(), "rounds": args.rounds,
                    "median_ms": {k: round(v, 4) for k, v in med.items()},
                    "ratio_vs_fp32": {k: round(med[k] / med["fp32"], 3) for k in med},
                    "switch_same_topology_ms": switch},
    }
    _print(report, variants)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from dymu_rt.core.io import atomic_write_json

    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


def _print(report: dict, variants: list[str]) -> None:
    print(f"bundle: {report['bundle']} ({report['bundle_used']}); {report['validation']['n']} validation scenes, "
          f"mean over {len(report['per_preference'])} preferences")
    head = f"{'task':<10} {'metric':<8} {'fp32':>9}" + "".join(f" {v:>9} {'change':>8}" for v in variants[1:])
    print(head)
    print("-" * len(head))
    for name, e in report["per_task_mean_over_preferences"].items():
        line = f"{name:<10} {e['metric']:<8} {e['fp32']:>9.4f}"
        for v in variants[1:]:
            line += f" {e[v]:>9.4f} {e[f'{v}_change']:>+8.4f}"
        print(line)
    lat = report["latency"]
    print(f"latency (batch 1, {lat['threads']} threads, median of {lat['rounds']}): " + ", ".join(
        f"{k} {v:.3f} ms ({lat['ratio_vs_fp32'][k]:.2f}x)" for k, v in lat["median_ms"].items()))
    print("switch within a topology: " + ", ".join(f"{k} {v} ms" for k, v in lat["switch_same_topology_ms"].items()))
    print(f"fp16: {report['fp16']}")


if __name__ == "__main__":
    sys.exit(main() and 0)
