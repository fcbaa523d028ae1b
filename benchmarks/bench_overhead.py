"""Where the per-call time of a small tree goes (issue 23, second session): is the gap between
latency and GMACs at synth-nyu ours (Runtime.infer, the backend's engine) or the engine's?

    python benchmarks/bench_overhead.py [--bundle BUNDLE] [--threads 1] [--rounds 20] [--iters 50]

For the bundle's smallest- and largest-GMACs topologies (each at its first grid point, the
steady state: the preference's folded graph), in one process, interleaved rounds
(:func:`dymu_rt.runtime.latency.time_interleaved`), batch 1, ``--threads`` intra-op threads:

* ``plain ORT``: ``onnxruntime.InferenceSession`` (ORT_ENABLE_ALL) on the folded graph written
  to a file, ``sess.run(None, {"image": x})``;
* ``dymu-rt ORT infer``: ``Runtime.infer(x)`` with ``second_tier="sync"`` (the folded engine);
* ``dymu-rt ORT bare session``: that runtime's own folded session called directly
  (``session.run``): Runtime.infer minus this is our Python overhead;
* ``plain OpenVINO``: ``core.compile_model`` on the same folded ONNX (f32, LATENCY, no
  pinning, as the backend compiles) and ``infer_request.infer``;
* ``dymu-rt OV infer``: ``Runtime.infer(x)`` on ``x86-64-cpu-openvino`` (folded, sync);
* ``dymu-rt OV bare request``: that runtime's own compiled model's infer request called directly.

Reports per contender p50 small / large, their ratio against the GMACs ratio (target:
within 15 %), and the two-point fixed cost ``a`` of latency = a + b * GMACs. Writes
``benchmarks/results/tiers/overhead-<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from bench_tiers import folded_graph, thread_profile, versions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None, help="default: the shipped synth-nyu bundle")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--tag", default=None)
    ap.add_argument("--skip-openvino", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE.parent / "results" / "tiers")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import onnxruntime as ort

    from dymu_rt.bundle.layout import default_bundle_path
    from dymu_rt.runtime import Runtime
    from dymu_rt.runtime.latency import time_interleaved

    bundle = args.bundle or default_bundle_path()
    tmp = Path(tempfile.mkdtemp(prefix="dymu-overhead-"))
    fp32 = thread_profile("x86-64-cpu", args.threads, tmp)
    rt = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="sync")
    m = rt.manifest
    tag = args.tag or m.preset
    by_macs = sorted(m.topologies, key=lambda t: (m.topologies[t].macs, t))
    small, large = by_macs[0], by_macs[-1]
    first = m.first_points()
    h, w = m.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    res: dict = {"versions": versions(), "threads": args.threads, "batch": 1, "bundle": str(bundle),
                 "preset": m.preset, "rounds": args.rounds, "iters": args.iters,
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "loadavg_start": os.getloadavg()[0],
                 "topologies": {"small": {"id": small, "gmacs": m.topologies[small].gmacs},
                                "large": {"id": large, "gmacs": m.topologies[large].gmacs}}}
    calls: dict = {}
    keep = []
    ov = None
    if not args.skip_openvino:
        try:
            import openvino as ov

            from dymu_rt.backends.openvino import compile_config
        except ImportError as e:
            res["openvino_skipped"] = f"import openvino failed: {e}"
    for which, tid in (("small", small), ("large", large)):
        p = first[tid]
        graph = folded_graph(bundle, rt, tid, rt.controller.deltas(p.r, p.c), tmp / f"{which}.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        plain = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])
        calls[f"plain ORT|{which}"] = lambda s=plain: s.run(None, {"image": x})
        r = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="sync")
        r.set_preference(p.r, p.c)
        st = r._state
        assert st.tier == "folded" and st.topology == tid, (st.tier, st.topology)
        sess = st.bound.session
        names = st.engine.output_names
        calls[f"dymu-rt ORT infer|{which}"] = lambda r=r: r.infer(x)
        calls[f"dymu-rt ORT bare session|{which}"] = lambda s=sess, n=names: s.run(n, {"image": x})
        keep.append(r)
        if ov is not None:
            core = ov.Core()
            cm = core.compile_model(str(graph), "CPU", compile_config(fp32_like(args.threads), "fp32"))
            req = cm.create_infer_request()
            calls[f"plain OpenVINO|{which}"] = lambda q=req: q.infer({"image": x})
            ovp = thread_profile("x86-64-cpu-openvino", args.threads, tmp)
            ro = Runtime.open(bundle, profile=str(ovp), cache_engines=False, second_tier="sync")
            ro.set_preference(p.r, p.c)
            so_ = ro._state
            assert so_.tier == "folded", so_.tier
            comp = so_.bound.compiled
            breq = comp.model.create_infer_request()
            calls[f"dymu-rt OV infer|{which}"] = lambda r=ro: r.infer(x)
            calls[f"dymu-rt OV bare request|{which}"] = lambda q=breq: q.infer({"image": x})
            keep += [ro, cm]
    names = list(calls)
    print(f"{tag}: small {small} ({m.topologies[small].gmacs:.4f} GMACs), large {large} "
          f"({m.topologies[large].gmacs:.4f} GMACs); timing {len(names)} calls, {args.threads} thread(s)", flush=True)
    stats = time_interleaved([calls[k] for k in names], rounds=args.rounds, iters=args.iters, warmup=5)
    lat = {k: {"p50_ms": s["p50_ms"], "mean_ms": s["mean_ms"], "min_ms": s.get("min_ms")} for k, s in zip(names, stats)}
    res["loadavg_end"] = os.getloadavg()[0]
    g_s, g_l = m.topologies[small].gmacs, m.topologies[large].gmacs
    gratio = g_s / g_l
    rows = {}
    for k in dict.fromkeys(n.split("|")[0] for n in names):
        s_ms, l_ms = lat[f"{k}|small"]["p50_ms"], lat[f"{k}|large"]["p50_ms"]
        b = (l_ms - s_ms) / (g_l - g_s)
        rows[k] = {"small_p50_ms": s_ms, "large_p50_ms": l_ms, "latency_ratio": s_ms / l_ms,
                   "gmacs_ratio": gratio, "ratio_vs_gmacs": (s_ms / l_ms) / gratio - 1,
                   "fixed_cost_ms": l_ms - b * g_l, "ms_per_gmac": b}
    for a, bare in (("dymu-rt ORT infer", "dymu-rt ORT bare session"), ("dymu-rt OV infer", "dymu-rt OV bare request")):
        if a in rows:
            rows[a]["overhead_over_bare_ms"] = {w_: lat[f"{a}|{w_}"]["p50_ms"] - lat[f"{bare}|{w_}"]["p50_ms"]
                                                for w_ in ("small", "large")}
    if "plain OpenVINO" in rows:
        res["ov_over_ort"] = {w_: lat[f"plain OpenVINO|{w_}"]["p50_ms"] / lat[f"plain ORT|{w_}"]["p50_ms"]
                              for w_ in ("small", "large")}
        res["dymu_ov_over_dymu_ort"] = {w_: lat[f"dymu-rt OV infer|{w_}"]["p50_ms"] /
                                        lat[f"dymu-rt ORT infer|{w_}"]["p50_ms"] for w_ in ("small", "large")}
    res["latency"], res["rows"] = lat, rows
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"overhead-{tag}.json"
    out.write_text(json.dumps(res, indent=2))
    print(f"GMACs ratio small/large {gratio:.3f}; load {res['loadavg_start']:.2f} -> {res['loadavg_end']:.2f}")
    print(f"{'contender':28s} {'small ms':>9s} {'large ms':>9s} {'ratio':>6s} {'vs GMACs':>8s} {'fixed ms':>8s}")
    for k, r_ in rows.items():
        print(f"{k:28s} {r_['small_p50_ms']:9.3f} {r_['large_p50_ms']:9.3f} {r_['latency_ratio']:6.3f} "
              f"{100 * r_['ratio_vs_gmacs']:+7.0f}% {r_['fixed_cost_ms']:8.3f}")
    for k in ("ov_over_ort", "dymu_ov_over_dymu_ort"):
        if k in res:
            print(k, {a: round(v, 3) for a, v in res[k].items()})
    print(f"wrote {out}")
    for r_ in keep:
        if hasattr(r_, "close"):
            r_.close()


def fp32_like(threads: int):
    """A minimal profile object for :func:`dymu_rt.backends.openvino.compile_config`."""
    class P:
        pass
    p = P()
    p.threads = threads
    return p


if __name__ == "__main__":
    main()
