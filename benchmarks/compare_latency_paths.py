"""Old vs new latency of ``dymu-rt compare``'s rows, measured in one run (interleaved rounds).

    python benchmarks/compare_latency_paths.py DYMU_RUN [STATIC_RUN ...] [--threads 1] [--rounds 20]
        [--iters 20] [--warmup 10] [--json OUT.json]

* **old** (what ``dymu-rt compare`` timed before): each row's architecture fully folded
  (every BN, deltas of its preference included) and exported, in its own ONNX Runtime
  session (ORT_ENABLE_ALL, ``threads`` intra-op threads). The old compare's PHN-BN row was
  the DYMU anchor on PHN's parent table with heads on their own streams; it is timed here
  too (``old PHN-BN module``), beside the PHN-BN architecture itself folded the same way.
* **new** (what ``dymu-rt compare`` times now, :mod:`dymu_rt.app.compare`): the row's deployed
  bundle through :meth:`dymu_rt.runtime.Runtime.timed_call` — DYMU rows in the grid
  bundle with affine binding, fixed architectures as static bundles.
* for the DYMU rows, where the difference comes from: the same grid bundle in the runtime
  with ``affine`` binding but each engine holding its own weights (``share_weights=False``:
  ORT_ENABLE_ALL with prepacking, as before weight sharing), and with ``session`` binding
  (a fully folded session per preference: no scale/shift inputs).

Every call (old and new) is timed in the same interleaved rounds
(:func:`dymu_rt.runtime.latency.time_interleaved`), so the ratios are within one run.
Threads are pinned (``--threads``; set OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE too).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def folded_session(module, size, threads: int):
    """The old compare's timing target: the module folded, exported, in its own ORT session."""
    import onnxruntime as ort

    from dymu_rt.compile.export import export_tree_model
    from dymu_rt.compile.fold_modules import fold_bn

    m = fold_bn(copy.deepcopy(module))
    model = export_tree_model(m, size, list(m.task_names))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="one DYMU run (+ PHN-BN) and any AdaShare / DAG runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dymu_rt.backends.devices import with_threads
    from dymu_rt.backends.onnxruntime import OnnxRuntimeBackend
    from dymu_rt.bundle.sections import open_manifest
    from dymu_rt.app.compare import PROFILE, contenders, open_runtimes
    from dymu_rt.runtime import Runtime
    from dymu_rt.compile.architecture import materialize
    from dymu_rt.runtime.latency import time_interleaved
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.phn import load_phn_bn
    from dymu_rt.methods import method_for

    runs = [RunDir(p) for p in args.runs]
    rows = contenders(runs)
    dymu = next(r for r in runs if method_for(r).bundle == "grid")
    preset = dymu.preset()
    size = tuple(preset.input_size)
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)

    # Old path first: open_runtimes folds the static rows' modules in place.
    old = []
    for row in rows:
        sess = folded_session(row["module"], size, args.threads)
        old.append((f"{row['label']}", lambda s=sess: s.run(None, {"image": x})))
    if dymu.stage_done("phn-bn"):
        anchor, phn = dymu.load_anchor(), load_phn_bn(dymu)
        n = len(preset.tasks)
        with torch.no_grad():
            d = phn.hyper(torch.full((n,), 1.0 / n), torch.zeros(())).reshape(-1)
        sess = folded_session(materialize(anchor, phn.parents, d), size, args.threads)
        old.append(("old PHN-BN module (DYMU anchor, heads on own streams)", lambda s=sess: s.run(None, {"image": x})))
    with tempfile.TemporaryDirectory(prefix="dymu-bench-") as tmp:
        new, runtimes = open_runtimes(rows, runs, Path(tmp), args.threads)
        # The DYMU rows' grid bundle in two more runtime configurations (see the docstring).
        profile = with_threads(PROFILE, args.threads)
        grid = Path(tmp) / "dymu"
        variants = {"affine, own weights": Runtime(grid, open_manifest(grid), OnnxRuntimeBackend(share_weights=False),
                                                   profile, False),
                    "session (folded per preference)": Runtime.open(grid, profile=profile, binding="session",
                                                                    cache_engines=False)}
        extra = []
        for row in rows:
            if row["deploy"]["kind"] != "grid":
                continue
            for name, rt in variants.items():
                rt.set_preference(row["deploy"]["r"], row["deploy"]["c"])
                extra.append((f"{row['label']}: runtime, {name}", rt.timed_call(x)[0]))
        calls = [c for _, c in old] + [c for c, _ in new] + [c for _, c in extra]
        stats = time_interleaved(calls, args.rounds, args.iters, args.warmup)
        for rt in [*runtimes, *variants.values()]:
            rt.close()
    old_stats, new_stats = stats[:len(old)], stats[len(old):len(old) + len(new)]
    extra_stats = stats[len(old) + len(new):]
    out = []
    print(f"threads {args.threads}, batch 1, {args.rounds} rounds x {args.iters} iters, warmup {args.warmup}; "
          "p50 ms (median of all timed runs)")
    print(f"{'row':<28} {'old: folded, own session':>26} {'new: runtime (binding)':>30} {'new/old':>8}")
    for i, row in enumerate(rows):
        o, (_, facts), s = old_stats[i], new[i], new_stats[i]
        binding = "affine" if facts["bundle"] == "grid" else "static"
        out.append({"label": row["label"], "old_p50_ms": o["p50_ms"], "new_p50_ms": s["p50_ms"], "binding": binding,
                    "ratio": s["p50_ms"] / o["p50_ms"], "timed": facts})
        print(f"{row['label']:<28} {o['p50_ms']:>26.3f} {s['p50_ms']:>21.3f} ({binding:>6}) "
              f"{s['p50_ms'] / o['p50_ms']:>8.2f}")
    for (label, _), o in zip(old[len(rows):], old_stats[len(rows):]):
        out.append({"label": label, "old_p50_ms": o["p50_ms"]})
        print(f"{label}: old path {o['p50_ms']:.3f} ms")
    for (label, _), s in zip(extra, extra_stats):
        out.append({"label": label, "p50_ms": s["p50_ms"]})
        print(f"{label}: {s['p50_ms']:.3f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "iters": args.iters,
                                         "warmup": args.warmup, "rows": out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
