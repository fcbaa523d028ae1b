"""Two tiers per preference (issue 23): what the default runtime runs once a switch settles,
against what a user would pick instead, in one run.

    python benchmarks/bench_tiers.py --bundle BUNDLE [--run RUN] [--threads 1] [--out DIR] [--tag NAME]

``BUNDLE`` is a grid bundle (pascal3: ``dymu-rt train --preset pascal3 --out RUN
--anchor-steps 1 --edge-steps 1 --weight-steps 1 --batch 2 --n-train 8 --n-val 4``, then
``bench_scale.vary_run`` (edge hypernet heads x20, so trees vary over the grid) and
``build_bundle(..., step=0.25, c_step=0.25)``; ``--prepare-run RUN`` does both; synth-nyu:
the shipped default bundle). ``RUN`` (the run the bundle was built from) enables the
PyTorch eager row. INT8 rows need a calibrated bundle (``--calibrate N`` calibrates a
copy-free bundle in place on N procedural scenes when it is not).

Measured in this process, 1 intra-op thread (``--threads``), batch 1, every contender on
the bundle's largest-GMACs topology at its first grid point, interleaved rounds
(:func:`dymu_rt.runtime.latency.time_interleaved`), medians:

* ``dymu-rt default (steady)``: ``Runtime.open`` defaults, ``set_preference``, then the
  second tier's folded engine once it is swapped in (``wait_folded``);
* ``instant tier``: the same runtime with ``second_tier="off"`` (BN scale/shift as inputs,
  weights held once);
* ``folded tier (sync)``: ``second_tier="sync"``;
* ``plain ORT``: ``onnxruntime.InferenceSession`` on the same folded graph (that
  preference's folded weights written into the bundle's graph), ORT_ENABLE_ALL;
* ``PyTorch eager (folded)``: the materialized tree with BN folded (needs ``--run``);
* ``INT8 folded`` / ``INT8 instant``: the ``x86-64-cpu-int8`` profile's two tiers;
* ``OpenVINO f32`` / ``OpenVINO bf16``: the plain OpenVINO API on the same folded ONNX,
  ``INFERENCE_PRECISION_HINT`` explicit (only when ``import openvino`` works); with the
  max relative output error vs plain ORT.

Then: switch cost (``set_preference`` p50 over fresh preferences, each used once: within one
topology and alternating between two, instant tier; sampled by :func:`sample_fresh`; plus
the time of each step of a switch); time to the folded tier after a switch, in ms and in
instant-tier inferences served meanwhile by a thread inferring continuously; latency vs
GMACs of every topology on both tiers (``--skip all-topologies`` to skip); RSS with 1/4/8
cached topologies, second tier on, a fresh process each (``Runtime.open`` with the shipped
profile's engine budget, each topology set, run, its folded engine awaited, run again).

Writes ``DIR/bench_tiers-<tag>.json`` and ``.png`` and prints a table; ``--rss-only`` (nyuv2, whose
inferences take seconds) writes ``DIR/bench_tiers-<tag>-rss.json`` with the RSS probes alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_profile(base: str, threads: int, folder: Path, budget_mb: int | None = 65536,
                   folded: int | None = None) -> Path:
    """A copy of a shipped profile with ``threads`` set (and the engine budget raised unless
    None; ``folded``: its ``[memory] folded_engines``)."""
    import importlib.resources

    text = (importlib.resources.files("dymu_rt.profiles") / f"{base}.toml").read_text()
    name = f"{base}-t{threads}" + ("" if budget_mb is None else "-big") + ("" if folded is None else f"-f{folded}")
    if folded is not None:
        text = text.replace("[memory]\n", f"[memory]\nfolded_engines = {folded}\n")
    text = text.replace(f'name = "{base}"', f'name = "{name}"').replace("threads = 0", f"threads = {threads}")
    if budget_mb is not None:
        text = text.replace("engine_cache_mb = ", f"engine_cache_mb = {budget_mb} # was ")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def versions() -> dict:
    import onnxruntime

    import dymu_rt

    out = {"dymu_rt": dymu_rt.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
           "python": platform.python_version(), "machine": platform.machine()}
    for mod in ("torch", "onnx", "openvino"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # optional
            pass
    try:
        out["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return out


def med(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def folded_graph(bundle: Path, rt, topology: str, deltas, out: Path) -> Path:
    """The topology's graph with the preference's folded weights, self-contained (external data beside)."""
    import onnx

    from dymu_rt.core.bn_fold import slot_weights

    m = rt.manifest
    model = onnx.load(str(bundle / m.topologies[topology].file))
    w = slot_weights(rt.pool.fold_params(), m.bn_layout, deltas, m.bn_eps, m.topologies[topology].bn_slots, "folded")
    for init in model.graph.initializer:
        if init.name in w:
            init.CopyFrom(onnx.numpy_helper.from_array(np.asarray(w[init.name], np.float32), init.name))
    onnx.save(model, str(out), save_as_external_data=True, location=out.name + ".bin")
    return out


def sample_fresh(rt, m, want: dict, seed: int = 0, tries: int = 200000) -> dict:
    """``want[topology]`` distinct fresh preferences (r, c) per topology: random ones (r ~
    Dirichlet(1), c ~ U(0, 1)) and grid points of those topologies jittered by N(0, 0.05),
    each kept when the runtime's selector picks that topology for it (the selection is not
    timed here)."""
    from dymu_rt.core.preference import make_preference

    rng = np.random.default_rng(seed)
    out: dict = {t: [] for t in want}
    near = [q for q in m.points if q.topology in want]
    n = len(m.task_names)
    for i in range(tries):
        if all(len(out[t]) >= k for t, k in want.items()):
            break
        if i % 2 == 0 or not near:
            r, c = rng.dirichlet(np.ones(n)), float(rng.random())
        else:
            q = near[rng.integers(len(near))]
            r = np.clip(np.asarray(q.r) + rng.normal(0, 0.05, n), 1e-3, None)
            r, c = r / r.sum(), float(np.clip(q.c + rng.normal(0, 0.05), 0, 1))
        pref = make_preference(list(map(float, r)), c, n)
        tid, _ = rt.controller.topology(pref.r, pref.c)
        t = rt.selector.select(pref, tid).topology
        if t in out and len(out[t]) < want[t]:
            out[t].append((list(pref.r), float(pref.c)))
    short = {t: len(v) for t, v in out.items() if len(v) < want[t]}
    if short:
        raise SystemExit(f"sample_fresh: only {short} fresh preferences found for {want}")
    return out


def prepare_run(run: Path, out: Path, grid: str) -> Path:
    from bench_scale import vary_run

    from dymu_rt.methods import build_bundle

    varied = vary_run(run, out / "run-varied", 20.0)
    build_bundle(varied, out / "bundle", step=grid, c_step=grid, workers=1)
    return out / "bundle"


# -- subprocess probe: RSS with K cached topologies, second tier on ----------------------------------

def probe_rss(bundle: str, profile: str, k: int) -> dict:
    base = rss_mb()
    from dymu_rt.runtime import Runtime

    rt = Runtime.open(bundle, profile=profile, cache_engines=False)
    m = rt.manifest
    first = m.first_points()
    counts: dict = {}
    for p in m.points:
        counts[p.topology] = counts.get(p.topology, 0) + 1
    tops = sorted(first, key=lambda t: -counts[t])[:k]
    h, w = m.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    after_open = rss_mb()
    folded = 0
    for tid in tops:
        p = first[tid]
        rt.set_preference(p.r, p.c)
        rt.infer(x)
        folded += bool(rt.wait_folded(600))
        rt.infer(x)
    return {"k": len(tops), "rss_mb": rss_mb(), "rss_import_mb": base, "rss_open_mb": after_open,
            "folded_swapped": folded, "second_tier": rt.second_tier, "cache": rt.cache.stats()}


def subprocess_probe(*args: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, str(HERE), "--probe", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"probe failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_part(bundle: Path, args, tmp: Path, res: dict) -> None:
    """RSS with K cached topologies (``--rss-k``), second tier on, a fresh process each, with
    the shipped engine budget and ``folded_engines`` (the default, 1 since the merge; it was 2 when the note measured 1.34x), then with ``folded_engines = 1``."""
    prof = thread_profile("x86-64-cpu", args.threads, tmp, budget_mb=None)   # the shipped budget
    ks = [int(v) for v in args.rss_k.split(",")]
    rss = [subprocess_probe(str(bundle), str(prof), str(k), threads=args.threads) for k in ks]
    res["rss"] = rss
    res.setdefault("targets", {})["rss_8_over_1"] = rss[-1]["rss_mb"] / rss[0]["rss_mb"]
    prof1 = thread_profile("x86-64-cpu", args.threads, tmp, budget_mb=None, folded=1)
    rss1 = [subprocess_probe(str(bundle), str(prof1), str(k), threads=args.threads) for k in (ks[0], ks[-1])]
    res["rss_folded_engines_1"] = rss1
    res["targets"]["rss_8_over_1_folded_engines_1"] = rss1[-1]["rss_mb"] / rss1[0]["rss_mb"]


# -- the benchmark ----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--run", type=Path, help="the run BUNDLE was built from (PyTorch eager row)")
    ap.add_argument("--prepare-run", type=Path, help="vary this 1-step run and build BUNDLE from it first")
    ap.add_argument("--grid", default="0.25")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--calibrate", type=int, default=0, help="calibrate INT8 on N procedural scenes if needed")
    ap.add_argument("--int8-direct", type=int, default=0,
                    help="bundle not calibrated: calibrate the timed topology alone on N scenes")
    ap.add_argument("--topo-rounds", type=int, default=5, help="rounds per topology (latency vs GMACs)")
    ap.add_argument("--rss-k", default="1,4,8")
    ap.add_argument("--rss-only", action="store_true", help="only the RSS probes (e.g. at nyuv2)")
    ap.add_argument("--skip", default="", help="comma list: eager,int8,openvino,all-topologies,rss,switch")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tiers"))
    ap.add_argument("--replot", type=Path)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("probe_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe_rss(args.probe, args.probe_args[0], int(args.probe_args[1]))))
        return
    if args.replot:
        res = json.loads(args.replot.read_text())
        report(res, args.replot.with_suffix(".png"))
        return
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.prepare_run is not None:
        args.bundle = prepare_run(args.prepare_run, args.bundle.parent if args.bundle else Path(tempfile.mkdtemp()),
                                  args.grid)
    if args.bundle is None:
        ap.error("--bundle BUNDLE is required")
    from dymu_rt.runtime import Runtime
    from dymu_rt.runtime.latency import time_interleaved

    bundle = args.bundle
    tmp = Path(tempfile.mkdtemp(prefix="dymu-tiers-"))
    fp32 = thread_profile("x86-64-cpu", args.threads, tmp)
    int8 = thread_profile("x86-64-cpu-int8", args.threads, tmp)
    res: dict = {"versions": versions(), "threads": args.threads, "batch": 1,
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "bundle": str(bundle),
                 "loadavg_1min_start": os.getloadavg()[0]}
    if args.rss_only:           # e.g. nyuv2, whose inferences take seconds each
        from dymu_rt.bundle.manifest import read_manifest

        res["preset"] = read_manifest(bundle).preset
        rss_part(bundle, args, tmp, res)
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"bench_tiers-{args.tag or res['preset']}-rss.json"
        out.write_text(json.dumps(res, indent=2))
        print(json.dumps(res["targets"]), f"\nwrote {out}")
        return
    rt = Runtime.open(bundle, profile=str(fp32), cache_engines=False)
    m = rt.manifest
    tag = args.tag or m.preset
    res["preset"], res["input_size"] = m.preset, list(m.input_size)
    res["topologies"] = len(m.topologies)
    first = m.first_points()
    big = max(m.topologies, key=lambda t: (m.topologies[t].macs, t))
    p = first[big]
    res["timed_topology"] = {"id": big, "gmacs": m.topologies[big].gmacs, "r": list(p.r), "c": p.c}
    h, w = m.input_size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    print(f"{tag}: {len(m.topologies)} topologies, timing {big} ({m.topologies[big].gmacs:.2f} GMACs)", flush=True)

    # 1. contenders on the largest topology ---------------------------------------------------------
    calls: dict = {}
    facts: dict = {}
    rt.set_preference(p.r, p.c)
    t0 = time.perf_counter()
    ok = rt.wait_folded(600)
    res["default_first_folded_s"] = time.perf_counter() - t0
    calls["dymu-rt default (steady)"], facts["dymu-rt default (steady)"] = rt.timed_call(x)
    assert ok and facts["dymu-rt default (steady)"]["tier"] == "folded", facts
    rt_off = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="off")
    rt_off.set_preference(p.r, p.c)
    calls["instant tier"], facts["instant tier"] = rt_off.timed_call(x)
    rt_sync = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="sync")
    rt_sync.set_preference(p.r, p.c)
    calls["folded tier (sync)"], facts["folded tier (sync)"] = rt_sync.timed_call(x)
    deltas = rt.controller.deltas(p.r, p.c)
    graph = folded_graph(bundle, rt, big, deltas, tmp / "folded.onnx")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    plain = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])
    calls["plain ORT (ORT_ENABLE_ALL)"] = lambda: plain.run(None, {"image": x})
    ref = dict(zip([o.name for o in plain.get_outputs()], plain.run(None, {"image": x})))
    errors = {}

    def rel_err(out: dict) -> float:
        return max(float(np.max(np.abs(np.asarray(out[k], np.float32) - ref[k])) / max(np.max(np.abs(ref[k])), 1e-6))
                   for k in ref)

    errors["dymu-rt default (steady)"] = rel_err(calls["dymu-rt default (steady)"]())
    errors["instant tier"] = rel_err(calls["instant tier"]())
    if "eager" not in skip and args.run is not None:
        import torch

        from dymu_rt.compile.architecture import materialize, preference_tensors
        from dymu_rt.compile.fold_modules import fold_bn
        from dymu_rt.run.layout import RunDir

        torch.set_num_threads(args.threads)
        _, anchor, _edge, weight = RunDir(args.run).load_all()
        rt_, ct_ = preference_tensors(list(p.r), p.c)
        with torch.no_grad():
            parents = np.asarray(m.topologies[big].parents)
            parents = np.where(parents < 0, np.arange(parents.shape[1])[None, :], parents)
            tree = fold_bn(materialize(anchor, parents, weight(rt_, ct_)).eval())
        xt = torch.from_numpy(x)

        def eager():
            with torch.no_grad():
                return tree(xt)
        calls["PyTorch eager (folded)"] = eager
    if "int8" not in skip:
        from dymu_rt.bundle.sections import int8_ranges

        try:
            for tid in m.topologies:
                int8_ranges(bundle, m, tid, check=True)
            calibrated = True
        except Exception:
            calibrated = False
        if not calibrated and args.calibrate:
            from dymu_rt.compile.calibrate import calibrate_bundle

            t0 = time.perf_counter()
            calibrate_bundle(bundle, synth=args.calibrate, progress=False)
            res["calibrate_s"] = time.perf_counter() - t0
            calibrated = True
        if calibrated:
            rt8 = Runtime.open(bundle, profile=str(int8), cache_engines=False, second_tier="sync")
            t0 = time.perf_counter()
            rt8.set_preference(p.r, p.c)
            res["int8_folded_build_s"] = time.perf_counter() - t0
            calls["INT8 folded"], facts["INT8 folded"] = rt8.timed_call(x)
            errors["INT8 folded"] = rel_err(calls["INT8 folded"]())
            rt8i = Runtime.open(bundle, profile=str(int8), cache_engines=False, second_tier="off")
            rt8i.set_preference(p.r, p.c)
            calls["INT8 instant (affine U8S8)"], facts["INT8 instant (affine U8S8)"] = rt8i.timed_call(x)
            errors["INT8 instant (affine U8S8)"] = rel_err(calls["INT8 instant (affine U8S8)"]())
        elif args.int8_direct:
            # The bundle is not calibrated (all topologies take long at 512x512): calibrate the
            # timed topology alone, exactly as `dymu-rt calibrate` does (affine graph, anchor
            # feeds, --int8-direct synthetic scenes), and build both INT8 engines from those
            # ranges with the functions the ORT backend's engines are made of.
            from dymu_rt.backends.int8_affine import (affine_qdq_model, anchor_feeds, calibrate_ranges,
                                                      folded_qdq_model)
            from dymu_rt.backends.onnxruntime import OnnxRuntimeBackend
            from dymu_rt.compile.calibrate import synth_set
            from dymu_rt.core.bn_fold import slot_weights

            topo = m.topologies[big]
            fold = rt.pool.fold_params()
            zero = np.zeros(int(m.bn_delta_size), np.float32)
            feeds = anchor_feeds(slot_weights(fold, m.bn_layout, zero, m.bn_eps, topo.bn_slots, "affine"))
            cset = synth_set(args.int8_direct, tuple(m.input_size), 0, m.preprocessing)
            ranges = tmp / "ranges.json"
            t0 = time.perf_counter()
            calibrate_ranges(bundle / topo.file, rt.pool, topo.bn_slots, feeds, cset.images, ranges)
            res["int8_calibrate_one_topology_s"] = time.perf_counter() - t0
            acts = OnnxRuntimeBackend().int8_activations
            so8 = ort.SessionOptions()
            so8.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so8.intra_op_num_threads, so8.inter_op_num_threads = args.threads, 1
            wf = slot_weights(fold, m.bn_layout, deltas, m.bn_eps, topo.bn_slots, "folded")
            t0 = time.perf_counter()
            qf = ort.InferenceSession(folded_qdq_model(bundle / topo.file, rt.pool, wf, ranges, acts)
                                      .SerializeToString(), sess_options=so8, providers=["CPUExecutionProvider"])
            res["int8_folded_build_s"] = time.perf_counter() - t0
            qa = ort.InferenceSession(affine_qdq_model(bundle / topo.file, rt.pool, topo.bn_slots, ranges, acts)
                                      .SerializeToString(), sess_options=so8, providers=["CPUExecutionProvider"])
            wa = anchor_feeds(slot_weights(fold, m.bn_layout, deltas, m.bn_eps, topo.bn_slots, "affine"))
            on = [o.name for o in plain.get_outputs()]
            calls["INT8 folded"] = lambda: dict(zip(on, qf.run(on, {"image": x})))
            calls["INT8 instant (affine U8S8)"] = lambda: dict(zip(on, qa.run(on, {"image": x, **wa})))
            errors["INT8 folded"] = rel_err(calls["INT8 folded"]())
            errors["INT8 instant (affine U8S8)"] = rel_err(calls["INT8 instant (affine U8S8)"]())
            res["int8_path"] = (f"bundle not calibrated: the timed topology calibrated alone ({args.int8_direct} "
                                "synth scenes), engines from int8_affine.folded_qdq_model / affine_qdq_model")
        else:
            res["int8_skipped"] = "bundle not calibrated (pass --calibrate N or --int8-direct N)"
    if "openvino" not in skip:
        try:
            import openvino as ov

            core = ov.Core()
            caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            res["openvino_cpu_capabilities"] = list(caps)
            for prec in ("f32", "bf16"):
                if prec == "bf16" and "BF16" not in caps:
                    res["openvino_bf16_skipped"] = "CPU lacks BF16"
                    continue
                cm = core.compile_model(str(graph), "CPU", {"INFERENCE_NUM_THREADS": args.threads,
                                                            "INFERENCE_PRECISION_HINT": prec,
                                                            "PERFORMANCE_HINT": "LATENCY"})
                req = cm.create_infer_request()
                name = f"OpenVINO {prec} (plain API, folded ONNX)"
                calls[name] = (lambda req=req: req.infer({"image": x}))
                outs = req.infer({"image": x})
                got = {o.get_any_name(): np.asarray(outs[o]) for o in cm.outputs}
                errors[name] = rel_err(got)
        except ImportError as e:
            res["openvino_skipped"] = f"import openvino failed: {e}"
    names = list(calls)
    print("timing:", ", ".join(names), flush=True)
    stats = time_interleaved([calls[k] for k in names], rounds=args.rounds, iters=args.iters, warmup=1)
    lat = {k: {"p50_ms": s["p50_ms"], "mean_ms": s["mean_ms"], "p90_ms": s["p90_ms"], "n": s["count"]}
           for k, s in zip(names, stats)}
    base = lat["dymu-rt default (steady)"]["p50_ms"]
    for k in lat:
        lat[k]["speed_vs_default"] = base / lat[k]["p50_ms"]
        if k in errors:
            lat[k]["max_rel_err_vs_plain_ort"] = errors[k]
        if k in facts:
            lat[k]["tier"] = facts[k].get("tier")
    res["latency"] = lat
    plain_ms = lat["plain ORT (ORT_ENABLE_ALL)"]["p50_ms"]
    res["targets"] = {"steady_vs_plain_ort": plain_ms / base}
    lat_path = args.out / f"bench_tiers-{tag}.partial.json"      # removed once the full JSON is written
    args.out.mkdir(parents=True, exist_ok=True)
    lat_path.write_text(json.dumps(res, indent=2))
    if "INT8 folded" in lat:
        res["targets"]["int8_folded_vs_folded_fp32"] = lat["folded tier (sync)"]["p50_ms"] / lat["INT8 folded"]["p50_ms"]

    # 2. switch cost and time to the folded tier ---------------------------------------------------
    if "switch" not in skip:
        # Fresh preferences, each used once (nothing the runtime could have cached for it):
        # random (r, c) (r ~ Dirichlet(1), c ~ U(0, 1), and points jittered around the grid
        # points of the topologies involved), sampled before timing and sorted by the topology
        # the selector picks for them; a switch alternates between two such lists.
        other = next((t for t in first if t != big), None)
        want = {big: 2 * args.switches, other: args.switches} if other else {big: 2 * args.switches}
        fresh = sample_fresh(rt_off, m, want, seed=0)
        seq_same = fresh[big][:args.switches]
        seq_other = [(fresh[big][args.switches + i] if i % 2 == 0 else fresh[other][i])
                     for i in range(args.switches)] if other else []
        sw_same, sw_other = [], []
        rt_off.set_preference(*seq_same[0]) if seq_same else None
        for q in seq_same[1:]:
            t0 = time.perf_counter()
            rt_off.set_preference(*q)
            sw_same.append(1e3 * (time.perf_counter() - t0))
        for q in seq_other:
            t0 = time.perf_counter()
            rt_off.set_preference(*q)
            sw_other.append(1e3 * (time.perf_counter() - t0))
        # Where a switch's time goes (the same fresh preferences, each step timed alone).
        parts: dict = {"edge hypernet + tree": [], "selector": [], "weight hypernet": [], "bind (affine plan + feeds)": []}
        eng_big = rt_off.cache.get(big)
        from dymu_rt.core.preference import make_preference

        for q in fresh[big][:args.switches]:
            pref = make_preference(*q, len(m.task_names))
            t0 = time.perf_counter()
            tid_, _ = rt_off.controller.topology(pref.r, pref.c)
            t1 = time.perf_counter()
            sel = rt_off.selector.select(pref, tid_)
            t2 = time.perf_counter()
            d = rt_off.controller.deltas(sel.weights_at.r, sel.weights_at.c)
            t3 = time.perf_counter()
            rt_off._bind(eng_big, big, d)
            t4 = time.perf_counter()
            for k, a, b in zip(parts, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                parts[k].append(1e3 * (b - a))
        res["switch_breakdown_p50_ms"] = {k: med(v) for k, v in parts.items()}
        res["switch_sampling"] = {"same_topology": len(seq_same), "two_topologies": len(seq_other),
                                  "how": "fresh (r, c) each switch: Dirichlet(1) r, U(0,1) c, and grid points "
                                         "jittered by N(0, 0.05); kept where the selector picks the topology"}
        inst_ms = lat["instant tier"]["p50_ms"]
        sw = {"set_preference_same_topology_p50_ms": med(sw_same),
              "set_preference_cached_topologies_p50_ms": med(sw_other) if sw_other else None,
              "instant_inference_p50_ms": inst_ms,
              "switch_over_inference": med(sw_same) / inst_ms}
        # Time to the folded tier: a fresh runtime (nothing folded cached), one thread inferring
        # continuously, switches between preferences whose folded engines are not cached yet.
        rt_bg = Runtime.open(bundle, profile=str(fp32), cache_engines=False)
        rt_bg.set_preference(p.r, p.c)
        rt_bg.wait_folded(600)
        trials = []
        cands = ([q for q in m.points if q.topology == big and q != p] +
                 [q for q in m.points if q.topology != big])[:3]
        for q in cands:
            rt_bg.cache.get(q.topology)                 # its instant engine loaded: time the tier, not a load
            served = []
            import threading

            stop = threading.Event()

            def loop():
                while not stop.is_set():
                    rt_bg.infer(x)
                    served.append(rt_bg.stats()["tier"])
            th = threading.Thread(target=loop)
            th.start()
            time.sleep(0.05)
            n0 = len(served)
            t0 = time.perf_counter()
            rt_bg.set_preference(q.r, q.c)
            rt_bg.wait_folded(600)
            t_fold = 1e3 * (time.perf_counter() - t0)
            n1 = len(served)
            stop.set()
            th.join()
            ev = rt_bg.tier_log[-1]
            trials.append({"time_to_folded_ms": t_fold, "build_ms": ev.get("build_ms"),
                           "inferences_completed_meanwhile": n1 - n0,
                           "time_to_folded_over_folded_inference": t_fold / base})
        sw["time_to_folded"] = trials
        sw["time_to_folded_p50_ms"] = med([t["time_to_folded_ms"] for t in trials])
        sw["time_to_folded_in_inferences"] = sw["time_to_folded_p50_ms"] / base
        res["switch"] = sw
        res["targets"]["set_preference_p50_over_inference"] = sw["switch_over_inference"]
        res["targets"]["time_to_folded_in_inferences"] = sw["time_to_folded_in_inferences"]
        rt_bg.close()
    rt_off.close()
    rt_sync.close()

    # 3. latency vs GMACs, every topology, both tiers -----------------------------------------------
    if "all-topologies" not in skip:
        rows = []
        rt_all = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="sync")
        rt_in = Runtime.open(bundle, profile=str(fp32), cache_engines=False, second_tier="off")
        for tid in sorted(m.topologies, key=lambda t: m.topologies[t].macs):
            q = first[tid]
            rt_all.set_preference(q.r, q.c)
            rt_in.set_preference(q.r, q.c)
            cf, _ = rt_all.timed_call(x)
            ci, _ = rt_in.timed_call(x)
            st = time_interleaved([cf, ci], rounds=args.topo_rounds, iters=1, warmup=1)
            rows.append({"topology": tid, "gmacs": m.topologies[tid].gmacs, "folded_p50_ms": st[0]["p50_ms"],
                         "instant_p50_ms": st[1]["p50_ms"]})
            rt_all.cache.clear()
            rt_in.cache.clear()
        res["all_topologies"] = rows
        lo, hi = rows[0], rows[-1]
        # The target's ratio from the smallest and the largest tree timed in the same
        # interleaved rounds (one topology after another, machine load differs between them).
        rt_all.set_preference(first[lo["topology"]].r, first[lo["topology"]].c)
        c_lo, _ = rt_all.timed_call(x)
        rt_all.set_preference(first[hi["topology"]].r, first[hi["topology"]].c)
        c_hi, _ = rt_all.timed_call(x)
        st = time_interleaved([c_lo, c_hi], rounds=args.rounds, iters=args.iters, warmup=1)
        res["smallest_vs_largest"] = {"smallest": lo["topology"], "largest": hi["topology"],
                                      "smallest_p50_ms": st[0]["p50_ms"], "largest_p50_ms": st[1]["p50_ms"]}
        res["targets"]["latency_ratio_small_over_large"] = st[0]["p50_ms"] / st[1]["p50_ms"]
        res["targets"]["gmacs_ratio_small_over_large"] = lo["gmacs"] / hi["gmacs"]
        res["targets"]["latency_ratio_over_gmacs_ratio"] = (res["targets"]["latency_ratio_small_over_large"]
                                                            / res["targets"]["gmacs_ratio_small_over_large"])
        rt_all.close()
        rt_in.close()
    rt.close()

    # 4. RSS with K cached topologies, fresh processes, second tier on --------------------------------
    if "rss" not in skip:
        rss_part(bundle, args, tmp, res)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"bench_tiers-{tag}.json"
    res["loadavg_1min_end"] = os.getloadavg()[0]
    out.write_text(json.dumps(res, indent=2))
    lat_path.unlink(missing_ok=True)
    report(res, out.with_suffix(".png"))
    print(f"wrote {out}")


def report(res: dict, png: Path) -> None:
    print(f"\n{res['preset']} ({res['threads']} thread, batch 1; {res['timed_topology']['gmacs']:.2f} GMACs tree)")
    print(f"{'contender':44s} {'p50 ms':>9s} {'vs default':>10s} {'max rel err':>12s}")
    for k, row in res["latency"].items():
        err = row.get("max_rel_err_vs_plain_ort")
        print(f"{k:44s} {row['p50_ms']:9.2f} {row['speed_vs_default']:9.2f}x {'' if err is None else f'{err:.2e}':>12s}")
    print("targets:", json.dumps(res.get("targets", {}), indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = res.get("all_topologies") or []
    if rows:
        g = [r["gmacs"] for r in rows]
        ax[0].plot(g, [r["folded_p50_ms"] for r in rows], "o", label="folded tier (steady state)")
        ax[0].plot(g, [r["instant_p50_ms"] for r in rows], "x", label="instant tier (affine)")
        ax[0].set_xlabel("GMACs")
        ax[0].set_ylabel("p50 latency (ms)")
        ax[0].set_title(f"{res['preset']}: every topology, {res['threads']} thread")
        ax[0].legend()
    names = list(res["latency"])
    ax[1].barh(names, [res["latency"][k]["p50_ms"] for k in names])
    ax[1].invert_yaxis()
    ax[1].set_xlabel("p50 latency (ms), largest tree")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
