"""Runtime benchmark (issue 6): one run, ratios, on a trained run and its bundle.

At batch 1, interleaved in rounds so machine noise hits every contender alike:

* ``eager-anchor``: PyTorch eager executing the tree on the full anchor net (the paper's
  way: AnchorNet.forward with the parent table and BN modulation);
* ``eager-tree``: PyTorch eager on the materialized tree with BN folded;
* ``onnxruntime``: the bundle's engine through ``dymu_rt.runtime.Runtime``.

Switch latency of ``Runtime.set_preference``: to a cached topology, to a new weight binding
of the same topology, and to an uncached topology (engine cache cleared first). Achieved
GFLOP/s of every contender (2 × MACs / latency) against a large float32 matrix product on
the same machine in the same run (as a fraction of it).

    python benchmarks/bench_runtime.py RUN_DIR BUNDLE [--rounds 30] [--threads 1] [--json out.json] [--png out.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t))
    return out


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """Achieved GFLOP/s of an n×n float32 matrix product (torch, same threads)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    ms = min(_time(lambda: a @ b, reps))
    return 2 * n ** 3 / (ms / 1e3) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for BOTH PyTorch and ONNX Runtime (default 1: equal footing, and "
                         "immune to OpenMP spin-wait collapse when another process holds a core; "
                         "0 = each library's default)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from dymu_rt.compile.architecture import materialize
    from dymu_rt.compile.fold_modules import fold_bn
    from dymu_rt.models.cost import CostModel
    from dymu_rt.runtime import Runtime
    from dymu_rt.run.layout import RunDir

    preset, anchor, edge, weight = RunDir(args.run).load_all()
    r, c = (0.6, 0.2, 0.2), 0.5
    rt_, ct_ = torch.tensor(r, dtype=torch.float32), torch.tensor(c, dtype=torch.float32)
    with torch.no_grad():
        parents = edge.architecture(rt_, ct_)
        deltas = weight(rt_, ct_)
        tree = fold_bn(materialize(anchor, parents, deltas).eval())
    macs = CostModel(anchor).tree_cost(parents).macs
    h, w = preset.input_size
    x = torch.rand(1, 3, h, w)
    xn = x.numpy()
    profile = "x86-64-cpu"
    if args.threads:
        # Same thread count for ONNX Runtime as for PyTorch: a copy of the default profile.
        import tempfile
        import importlib.resources

        text = (importlib.resources.files("dymu_rt.profiles") / "x86-64-cpu.toml").read_text()
        text = text.replace('name = "x86-64-cpu"', f'name = "bench-threads-{args.threads}"')
        text = text.replace("threads = 0", f"threads = {args.threads}")
        profile = Path(tempfile.mkdtemp()) / f"bench-threads-{args.threads}.toml"
        profile.write_text(text)
    rt = Runtime.open(args.bundle, profile=str(profile))
    info = rt.set_preference(r, c)

    with torch.no_grad():
        ref = anchor(x, parents, deltas)
        got = rt.infer(xn)
        err = max(float((ref[k] - torch.from_numpy(got[k])).abs().max()) for k in ref) \
            if info["binding"] == "exact" else float("nan")
        contenders = {
            "eager-anchor": lambda: anchor(x, parents, deltas),
            "eager-tree": lambda: tree(x),
            "onnxruntime": lambda: rt.infer(xn),
        }
        for fn in contenders.values():          # warm-up
            _time(fn, 3)
        samples = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for k, fn in contenders.items():
                samples[k] += _time(fn, args.per_round)
    med = {k: statistics.median(v) for k, v in samples.items()}
    peak = matmul_gflops()

    # Switch latencies.
    tops = list(rt.manifest.topologies)
    current = rt.stats()["topology"]
    pts = rt.manifest.to_dict()["points"]
    same = next((p for p in pts if p["topology"] == current and (tuple(p["r"]), p["c"]) != (r, c)), None)
    other = next((p for p in pts if p["topology"] != current), None)
    switch = {}
    if other is not None:
        rt.set_preference(other["r"], other["c"])          # load it: now cached
        rt.set_preference(r, c)
        switch["cached topology"] = statistics.median(
            _time(lambda: (rt.set_preference(other["r"], other["c"]), rt.set_preference(r, c)), 10)) / 2
    if same is not None:
        switch["same topology, new weights"] = statistics.median(
            _time(lambda: (rt.set_preference(same["r"], same["c"]), rt.set_preference(r, c)), 10)) / 2
    if other is not None:
        def uncached():
            rt.cache.clear()
            rt.set_preference(other["r"], other["c"])
        switch["uncached topology"] = statistics.median(_time(uncached, 5))

    res = {
        "preference": {"r": r, "c": c, "topology": current, "binding": info["binding"]},
        "topologies_in_bundle": len(tops), "tree_macs": macs, "ort_vs_anchor_max_abs_err": err,
        "latency_ms_median": med,
        "speedup_vs_eager_anchor": {k: med["eager-anchor"] / v for k, v in med.items()},
        "gflops_achieved": {k: 2 * macs / (v / 1e3) / 1e9 for k, v in med.items()},
        "matmul_gflops": peak,
        "fraction_of_matmul": {k: 2 * macs / (v / 1e3) / 1e9 / peak for k, v in med.items()},
        "switch_ms": switch, "binding_mode": rt.stats().get("binding_mode"),
        "torch_threads": torch.get_num_threads(), "ort_threads": args.threads or "default",
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
        a1.bar(list(med), list(med.values()), color=["C0", "C1", "C2"])
        a1.set_ylabel("median latency, batch 1 (ms)")
        a1.set_title(f"tree {current} ({2 * macs / 1e6:.1f} MFLOPs)")
        a2.bar(list(switch), list(switch.values()), color="C3")
        a2.set_ylabel("switch latency (ms)")
        a2.set_title("Runtime.set_preference")
        a2.tick_params(axis="x", labelsize=7)
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
