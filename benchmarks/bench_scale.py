"""Deployment at the paper's scale (issue 14): one run, ratios, at the nyuv2 preset.

    python benchmarks/bench_scale.py --run RUN [--bundle BUNDLE] [--threads 1] [--out DIR]

``RUN`` is a run of the ``nyuv2`` preset (ResNet-34 + DeepLabv3+, 288x384; the weights need
not be trained for speed: ``dymu-rt train --preset nyuv2 --out RUN --anchor-steps 1
--edge-steps 1 --weight-steps 1 --batch 2 --n-train 8 --n-val 4``). A 1-step edge hypernet
still sits on its identity prior (every grid point gives the full anchor tree), so unless
``--bundle`` is given the benchmark copies the run with the edge hypernet's head outputs
scaled by ``--vary 20`` (the trees then vary over the grid as a trained controller's do;
recorded in the JSON) and builds a ``--grid 0.5`` bundle from it.

Measured in this one process (plus fresh subprocesses for memory and cold start), with the
same thread count everywhere (``--threads``, default 1):

* peak: achieved GFLOP/s of a large float32 sgemm (n = 2048; torch's BLAS and ORT's MLAS,
  the faster of the two), timed in every latency round next to the contenders, so each
  round's fraction of peak is taken under that round's machine load (this machine is shared);
* latency at batch 1 of the most frequent topology: ONNX Runtime FP32 and INT8 through the
  product's ``Runtime``, PyTorch eager on the materialized, BN-folded tree; each as a
  fraction of the peak (2 x MACs / latency / peak) and as a ratio to FP32; interleaved
  round-robin so machine noise hits each alike (count, mean, std, p50/p90/p99);
* switch costs of ``Runtime.set_preference``: cached topology, same topology with new
  weights, uncached topology (engine cache cleared), INT8 same topology new weights;
* bundle bytes over the anchor's weight bytes (and over anchor + hypernets);
* RSS with 1, 4, 8 cached topologies (a fresh subprocess each: ``Runtime.open``, then
  ``set_preference`` onto K distinct topologies, each run once);
* cold start: a fresh subprocess timing import + ``Runtime.open`` + ``set_preference`` +
  first inference.

Writes ``DIR/bench_scale.json``, ``DIR/bench_scale.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


# -- helpers ----------------------------------------------------------------------------------------

def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms, np.float64)
    p = np.percentile(a, [50, 90, 99])
    return {"count": int(a.size), "mean_ms": float(a.mean()), "std_ms": float(a.std(ddof=1) if a.size > 1 else 0.0),
            "p50_ms": float(p[0]), "p90_ms": float(p[1]), "p99_ms": float(p[2])}


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t))
    return out


def sgemm(threads: int, n: int = 2048):
    """Callables timing one n x n float32 matrix product with ``threads`` threads: torch's
    BLAS and ONNX Runtime's MLAS (the kernels ORT's convolutions use); the peak of a round is
    the faster of the two (the shipped torch's MKL is slow on AMD CPUs)."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
                          initializer=[numpy_helper.from_array(b.numpy(), "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    an = a.numpy()
    flops = 2 * n ** 3
    fns = {"torch": lambda: a @ b, "onnxruntime": lambda: sess.run(None, {"a": an})}
    for fn in fns.values():
        fn()
    return fns, flops


def thread_profile(base: str, threads: int, folder: Path) -> Path:
    """A copy of a shipped profile with ``threads`` set (same threads for every contender)."""
    import importlib.resources

    text = (importlib.resources.files("dymu_rt.profiles") / f"{base}.toml").read_text()
    name = f"{base}-t{threads}"
    text = text.replace(f'name = "{base}"', f'name = "{name}"').replace("threads = 0", f"threads = {threads}")
    text = text.replace("engine_cache_mb = ", "engine_cache_mb = 65536 # was ")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def vary_run(run: Path, out: Path, factor: float) -> Path:
    """Copy ``run`` with the edge hypernet's head outputs scaled by ``factor`` (see module doc)."""
    from safetensors.numpy import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("bundle*", "eval", "*.tmp"))
    path = out / "edge_hypernet.safetensors"
    d = load_file(str(path))
    save_file({k: (v * factor if k.startswith("heads.") else v) for k, v in d.items()}, str(path))
    return out


def library_versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    import dymu_rt

    return {"dymu_rt": dymu_rt.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}


# -- subprocess probes --------------------------------------------------------------------------------

def probe_rss(bundle: str, profile: str, k: int) -> dict:
    base = rss_mb()
    from dymu_rt.runtime import Runtime

    rt = Runtime.open(bundle, profile=profile, cache_engines=False)
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    first = {}
    for p in m["points"]:
        first.setdefault(p["topology"], p)
    tops = sorted(first, key=lambda t: -m["topologies"][t]["n_points"])[:k]
    h, w = m["preprocessing"]["input_size"]
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    after_open = rss_mb()
    for tid in tops:
        p = first[tid]
        rt.set_preference(p["r"], p["c"])
        rt.infer(x)
    return {"k": len(tops), "rss_mb": rss_mb(), "rss_import_mb": base, "rss_open_mb": after_open,
            "cache": rt.cache.stats()}


def probe_cold(bundle: str, profile: str) -> dict:
    t0 = time.perf_counter()
    from dymu_rt.runtime import Runtime

    t1 = time.perf_counter()
    rt = Runtime.open(bundle, profile=profile, cache_engines=False)
    t2 = time.perf_counter()
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    p = max(m["points"], key=lambda p: m["topologies"][p["topology"]]["n_points"])
    rt.set_preference(p["r"], p["c"])
    t3 = time.perf_counter()
    h, w = m["preprocessing"]["input_size"]
    rt.infer(np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32))
    t4 = time.perf_counter()
    return {"import_ms": 1e3 * (t1 - t0), "open_ms": 1e3 * (t2 - t1), "set_preference_ms": 1e3 * (t3 - t2),
            "first_inference_ms": 1e3 * (t4 - t3), "total_ms": 1e3 * (t4 - t0),
            "torch_imported": "torch" in sys.modules}


def subprocess_probe(kind: str, *args: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, str(HERE), "--probe", kind, *args], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"probe {kind} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the benchmark ----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    ap.add_argument("--bundle", type=Path, help="an already built bundle of RUN (skips --vary and the build)")
    ap.add_argument("--vary", type=float, default=20.0)
    ap.add_argument("--grid", default="0.5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="latency samples per contender (interleaved)")
    ap.add_argument("--calib", type=int, default=4, help="procedural scenes for INT8 calibration")
    ap.add_argument("--rss-k", default="1,4,8")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: eager,int8,rss,cold,switch")
    ap.add_argument("--out", type=Path, default=Path("bench-scale"))
    ap.add_argument("--replot", type=Path, help="redraw table and PNG from a bench_scale.json (no measuring)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("probe_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        fn = {"rss": lambda b, p, k: probe_rss(b, p, int(k)), "cold": probe_cold}[args.probe]
        print(json.dumps(fn(*args.probe_args)))
        return
    if args.replot:
        from rich.console import Console

        report(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"), Console())
        return
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    from dymu_rt.utils.progress import make_progress

    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="dymu-scale-"))
    res: dict = {"versions": library_versions(), "threads": args.threads,
                 "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # 1. bundle --------------------------------------------------------------------------------------
    if args.run is None:
        ap.error("--run RUN (a nyuv2 run) is required")
    if args.bundle is None:
        from dymu_rt.methods import build_bundle

        varied = vary_run(args.run, args.out / "run-varied", args.vary)
        t = time.perf_counter()
        build_bundle(varied, args.out / "bundle", step=args.grid, c_step=args.grid, workers=2)
        res["build_s"] = time.perf_counter() - t
        bundle, run = args.out / "bundle", varied
        res["vary"] = args.vary
    else:
        bundle, run = args.bundle, args.run
        res["vary"] = f"given bundle (built from {run})"
    m = json.loads((bundle / "manifest.json").read_text())
    res["bundle"] = {"path": str(bundle), "preset": m["preset"], "points": len(m["points"]),
                     "topologies": len(m["topologies"]), "input_size": m["preprocessing"]["input_size"]}
    fp32 = thread_profile("x86-64-cpu", args.threads, tmp)
    int8 = thread_profile("x86-64-cpu-int8", args.threads, tmp)

    # 2. sizes --------------------------------------------------------------------------------------
    from dymu_rt.bundle.layout import bundle_bytes
    from safetensors import safe_open

    size_of = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1, "F64": 8}

    def tensor_bytes(path: Path) -> int:
        """Bytes of the tensors in a safetensors file (the anchor's weights: what is deployed)."""
        with safe_open(str(path), "np") as f:
            return sum(int(np.prod(f.get_slice(k).get_shape(), dtype=np.int64)) * size_of[f.get_slice(k).get_dtype()]
                       for k in f.keys())

    anchor_b = tensor_bytes(run / "anchor.safetensors")
    hyper_b = tensor_bytes(run / "edge_hypernet.safetensors") + tensor_bytes(run / "weight_hypernet.safetensors")
    size = bundle_bytes(bundle)
    files = {p.relative_to(bundle).as_posix(): p.stat().st_size for p in bundle.rglob("*") if p.is_file()}
    big = dict(sorted(files.items(), key=lambda kv: -kv[1])[:5])
    res["size"] = {"bundle_bytes": size, "anchor_bytes": anchor_b, "hypernet_bytes": hyper_b,
                   "over_anchor": size / anchor_b, "over_anchor_plus_hypernets": size / (anchor_b + hyper_b),
                   "largest_files": big}

    # 3. latency ------------------------------------------------------------------------------------
    from dymu_rt.runtime import Runtime

    first = {}
    for p in m["points"]:
        first.setdefault(p["topology"], p)
    tops = sorted(first, key=lambda t: -m["topologies"][t]["n_points"])
    tid = tops[0]
    pref = first[tid]
    macs = m["topologies"][tid]["macs"]
    h, w = m["preprocessing"]["input_size"]
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    peak_fns, peak_flops = sgemm(args.threads)
    contenders = {}
    rt = Runtime.open(bundle, profile=str(fp32), cache_engines=False)
    rt.set_preference(pref["r"], pref["c"])
    contenders["ort-fp32"] = lambda: rt.infer(x)
    rt8 = None
    if "int8" not in skip:
        from dymu_rt.compile.calibrate import calibrate_bundle

        t = time.perf_counter()
        cal = calibrate_bundle(bundle, synth=args.calib, progress=True)
        res["calibrate_s"] = time.perf_counter() - t
        res["calibrate"] = {k: v for k, v in cal.items() if k != "calibration"}
        rt8 = Runtime.open(bundle, profile=str(int8), cache_engines=False)
        rt8.set_preference(pref["r"], pref["c"])
        contenders["ort-int8"] = lambda: rt8.infer(x)
    if "eager" not in skip:
        from dymu_rt.compile.architecture import materialize, preference_tensors
        from dymu_rt.compile.fold_modules import fold_bn
        from dymu_rt.run.layout import RunDir

        _, anchor, edge, weight = RunDir(run).load_all()
        rt_, ct_ = preference_tensors(pref["r"], pref["c"])
        with torch.no_grad():
            parents = np.asarray(rt.stats()["parents"])
            parents = np.where(parents < 0, np.arange(parents.shape[1])[None, :], parents)
            tree = fold_bn(materialize(anchor, parents, weight(rt_, ct_)).eval())
        xt = torch.from_numpy(x)

        def eager():
            with torch.no_grad():
                tree(xt)
        contenders["torch-eager"] = eager
    with make_progress() as bar:
        task = bar.add_task("latency rounds", total=args.rounds * len(contenders) + len(contenders), info="")
        samples = {k: [] for k in contenders}
        peaks = []
        for k, fn in contenders.items():        # warm-up
            fn()
            bar.update(task, advance=1, info=f"warm-up {k}")
        for i in range(args.rounds):
            ms = {k: min(timed(f, 2)) for k, f in peak_fns.items()}
            peaks.append({k: peak_flops / (v / 1e3) / 1e9 for k, v in ms.items()})
            for k, fn in contenders.items():
                samples[k] += timed(fn, 1)
                bar.update(task, advance=1, info=f"round {i + 1} {k}")
    round_peak = [max(p.values()) for p in peaks]
    peak = float(np.median(round_peak))
    res["peak_sgemm_gflops"] = peak
    res["peak_sgemm_per_round"] = peaks
    lat = {k: stats(v) for k, v in samples.items()}
    for k, row in lat.items():
        row["gflops"] = 2 * macs / (row["p50_ms"] / 1e3) / 1e9
        # per round: this contender's achieved GFLOP/s over that round's sgemm peak
        row["fraction_of_peak"] = float(np.median([2 * macs / (t / 1e3) / 1e9 / pk
                                                   for t, pk in zip(samples[k], round_peak)]))
        row["speedup_vs_fp32"] = lat["ort-fp32"]["p50_ms"] / row["p50_ms"]
    res["latency"] = {"topology": tid, "gmacs": macs / 1e9, "batch": 1, "rows": lat}

    # 4. switch costs ---------------------------------------------------------------------------------
    if "switch" not in skip:
        sw = {}
        same = next((p for p in m["points"] if p["topology"] == tid and p is not pref), None)
        other = next((first[t] for t in tops[1:]), None)
        if other is not None:
            rt.set_preference(other["r"], other["c"])
            rt.set_preference(pref["r"], pref["c"])
            sw["cached topology"] = stats(timed(lambda: rt.set_preference(other["r"], other["c"])
                                                or rt.set_preference(pref["r"], pref["c"]), 5))
            sw["cached topology"] = {k: (v / 2 if k.endswith("_ms") else v) for k, v in sw["cached topology"].items()}
        if same is not None:
            sw["same topology, new weights"] = stats(timed(lambda: rt.set_preference(same["r"], same["c"]), 5))
        if other is not None:
            def uncached():
                rt.cache.clear()
                rt.set_preference(other["r"], other["c"])
            sw["uncached topology"] = stats(timed(uncached, 3))
        if rt8 is not None and same is not None:
            alt = iter([same, pref] * 10)

            def int8_switch():
                p = next(alt)
                rt8.set_preference(p["r"], p["c"])
            sw["int8 same topology, new weights"] = stats(timed(int8_switch, 4))
            sw["int8 binding mode"] = {"mode": rt8.stats().get("binding_mode")}
        res["switch"] = sw
    rt.close()
    if rt8 is not None:
        rt8.close()

    # 5. memory and cold start (fresh processes) --------------------------------------------------------
    if "rss" not in skip:
        res["rss"] = {}
        for k in [int(v) for v in args.rss_k.split(",")]:
            console.print(f"RSS probe: {k} cached topologies")
            res["rss"][str(k)] = subprocess_probe("rss", str(bundle), str(fp32), str(k), threads=args.threads)
        ks = sorted(res["rss"], key=int)
        res["rss_ratio_max_over_1"] = res["rss"][ks[-1]]["rss_mb"] / res["rss"][ks[0]]["rss_mb"]
    if "cold" not in skip:
        console.print("cold start probe")
        res["cold_start"] = subprocess_probe("cold", str(bundle), str(fp32), threads=args.threads)

    (args.out / "bench_scale.json").write_text(json.dumps(res, indent=2))
    report(res, args.out / "bench_scale.png", console)


def report(res: dict, png: Path, console) -> None:
    from rich.table import Table

    t = Table(title=f"nyuv2 scale, batch 1, {res['threads']} thread(s), peak sgemm {res['peak_sgemm_gflops']:.1f} GFLOP/s")
    for col in ("contender", "n", "mean ms", "std", "p50", "p90", "p99", "GFLOP/s", "of peak", "vs FP32"):
        t.add_column(col, justify="right")
    for k, r in res["latency"]["rows"].items():
        t.add_row(k, str(r["count"]), f"{r['mean_ms']:.0f}", f"{r['std_ms']:.0f}", f"{r['p50_ms']:.0f}",
                  f"{r['p90_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['gflops']:.1f}", f"{100 * r['fraction_of_peak']:.0f}%",
                  f"{r['speedup_vs_fp32']:.2f}x")
    console.print(t)
    if "switch" in res:
        t2 = Table(title="switch costs (Runtime.set_preference)")
        t2.add_column("switch")
        t2.add_column("p50 ms", justify="right")
        for k, r in res["switch"].items():
            t2.add_row(k, f"{r['p50_ms']:.2f}" if "p50_ms" in r else str(r))
        console.print(t2)
    s = res["size"]
    console.print(f"bundle {s['bundle_bytes'] / 2**20:.1f} MiB = {s['over_anchor']:.3f} x anchor weights "
                  f"({s['anchor_bytes'] / 2**20:.1f} MiB), {s['over_anchor_plus_hypernets']:.3f} x anchor + hypernets")
    if "rss" in res:
        console.print("RSS: " + ", ".join(f"{k} cached: {v['rss_mb']:.0f} MiB" for k, v in res["rss"].items())
                      + f"; ratio {res['rss_ratio_max_over_1']:.2f}")
    if "cold_start" in res:
        c = res["cold_start"]
        console.print(f"cold start {c['total_ms']:.0f} ms (import {c['import_ms']:.0f}, open {c['open_ms']:.0f}, "
                      f"set_preference {c['set_preference_ms']:.0f}, first inference {c['first_inference_ms']:.0f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), layout="constrained")
    rows = res["latency"]["rows"]
    ax = axes[0]
    ax.bar(list(rows), [100 * r["fraction_of_peak"] for r in rows.values()], color=["C0", "C1", "C2"][:len(rows)])
    for i, r in enumerate(rows.values()):
        ax.text(i, 100 * r["fraction_of_peak"], f"{r['p50_ms']:.0f} ms", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("% of sgemm peak (2xMACs / p50)")
    ax.set_title(f"latency, {res['latency']['gmacs']:.0f} GMACs tree")
    ax = axes[1]
    sw = {k: v["p50_ms"] for k, v in res.get("switch", {}).items() if "p50_ms" in v}
    ax.barh(list(sw), list(sw.values()), color="C3")
    ax.set_xscale("log")
    ax.set_xlabel("switch p50 (ms, log)")
    ax.set_title("set_preference")
    ax.tick_params(axis="y", labelsize=7)
    ax = axes[2]
    s = res["size"]
    parts = {"anchor": s["anchor_bytes"], "anchor +\nhypernets": s["anchor_bytes"] + s["hypernet_bytes"],
             "bundle": s["bundle_bytes"]}
    ax.bar(list(parts), [v / 2**20 for v in parts.values()], color=["C7", "C7", "C4"])
    ax.set_ylabel("MiB")
    ax.set_title(f"bundle = {s['over_anchor_plus_hypernets']:.2f} x (anchor+hypernets)")
    ax = axes[3]
    if "rss" in res:
        ks = sorted(res["rss"], key=int)
        ax.plot([int(k) for k in ks], [res["rss"][k]["rss_mb"] for k in ks], "o-")
        ax.set_xlabel("cached topologies")
        ax.set_ylabel("process RSS (MiB)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"RSS, {res['rss_ratio_max_over_1']:.2f}x from 1 to {ks[-1]}")
    fig.suptitle(f"bench_scale: {res['bundle']['preset']}, {res['bundle']['topologies']} topologies, "
                 f"{res['threads']} thread(s), ORT {res['versions']['onnxruntime']}, {res['timestamp']}", fontsize=9)
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
