"""Triton serving on this CPU: throughput and p50/p99 latency against client concurrency and
the dynamic batcher's queue delay, next to the in-process Runtime on the same requests.

    python benchmarks/bench_triton.py                      # ~3 min on 2 cores
    python benchmarks/bench_triton.py --seconds 8 --delays 0,500,2000,8000

What runs: the shipped bundle pruned to its 3 most used topologies (the bundle of the
integration tests; tests/serve/serve_helpers.py) exported with ``dymu-rt export triton
--backend python`` (each model an ONNX Runtime session in Triton's Python backend, 1 intra-op
thread, 1 instance per topology model, the router's 2 instances), served by the
``nvidia-pytriton`` wheel's ``tritonserver`` (tests/serve/tritonserver.py starts it). For
each queue delay (``max_queue_delay_microseconds`` of the router and topology models, set in
a copy of the repository; the export writes 500) the server is started afresh, then for each
concurrency C, C client threads (one gRPC client each) send single-image requests back to
back for ``--seconds`` after a 1 s warm-up, each with a preference drawn from 40 random ones
(a quarter of them grid points) and its own image.

Client: the project's own loop (``perf_analyzer`` is not available: the registry's
``perf-analyzer`` package is a 0.1.0 placeholder for this platform, and tritonclient only
names it in an extra). Client, server and its Python stubs share this machine's cores, so
the server numbers include the client's cost; the in-process numbers have no such cost.

In-process reference (measured before each server start, median reported), same requests, one thread (ONNX Runtime 1 intra-op thread, the
x86-64-cpu profile): ``Runtime.set_preference`` + ``infer`` per request (what the server does
per request), and ``infer`` alone at one fixed preference (the best case: no switching).

CPU cost: besides wall-clock throughput (which on a shared machine mostly says how much of
the cores each side got: the server runs ~10 processes, the in-process loop one thread),
each point records CPU milliseconds per request: user + system time of the server and its
Python stubs (/proc), of the client threads, and of the in-process loop. That is the figure
to compare across sides on a busy machine.

Writes benchmarks/results/triton/bench_triton.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from serve_helpers import prune_bundle  # noqa: E402
from tritonserver import TritonServer, find_server  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "triton"


def request_pool(points, n, seed):
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(n):
        if i % 4 == 0:
            p = points[int(rng.integers(len(points)))]
            pool.append((np.asarray(p.r, np.float32), np.float32(p.c)))
        else:
            r = rng.dirichlet(np.ones(3)).astype(np.float32)
            r[-1] = max(np.float32(0.0), np.float32(1.0) - r[0] - r[1])
            pool.append((r, np.float32(rng.uniform(0, 1))))
    return pool


def cpu_seconds(pids) -> float:
    """user + system CPU seconds so far of processes ``pids`` (those gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick      # utime, stime
    return total


def set_queue_delay(repo: Path, delay_us: int) -> None:
    for cfg in repo.glob("*/config.pbtxt"):
        text = cfg.read_text()
        cfg.write_text(re.sub(r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: {delay_us}", text))


def client_loop(server, pool, images, concurrency, seconds, seed):
    """C threads sending back to back; returns (completed requests, latencies s, errors, wall s)."""
    import tritonclient.grpc as G

    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0, 0.0]         # [warm-up end, end]

    def run(k):
        client = G.InferenceServerClient(server.grpc_url)
        rng = np.random.default_rng(seed + k)
        start.wait()
        while True:
            now = time.perf_counter()
            if now >= stop_at[1]:
                break
            r, c = pool[int(rng.integers(len(pool)))]
            image = images[int(rng.integers(len(images)))]
            inputs = []
            for name, a in (("image", image[None]), ("r", r[None]), ("c", np.asarray([[c]], np.float32))):
                t = G.InferInput(name, list(a.shape), "FP32")
                t.set_data_from_numpy(np.ascontiguousarray(a))
                inputs.append(t)
            t0 = time.perf_counter()
            try:
                client.infer("dymu", inputs, outputs=[G.InferRequestedOutput("depth")])
            except Exception:
                errors[k] += 1
                continue
            t1 = time.perf_counter()
            if t0 >= stop_at[0]:
                lat[k].append(t1 - t0)
        client.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    stop_at[0], stop_at[1] = now + 1.0, now + 1.0 + seconds
    start.wait()
    server_pids = [server.proc.pid, *server.stubs()]
    while time.perf_counter() < stop_at[0]:
        time.sleep(0.01)
    cpu0 = (cpu_seconds(server_pids), time.process_time())
    for t in threads:
        t.join()
    cpu = (cpu_seconds(server_pids) - cpu0[0], time.process_time() - cpu0[1])
    flat = [x for lk in lat for x in lk]
    return len(flat), flat, sum(errors), seconds, cpu


def in_process(bundle, pool, images, seconds, seed):
    from dymu_rt.runtime import Runtime

    rt = Runtime.open(bundle, cache_engines=False)
    rng = np.random.default_rng(seed)
    out = {}
    for mode in ("switching", "fixed"):
        r0, c0 = pool[1]
        rt.set_preference([float(v) for v in r0], float(c0))
        lat = []
        end = time.perf_counter() + 1.0 + seconds
        warm = time.perf_counter() + 1.0
        cpu0 = None
        while time.perf_counter() < end:
            if cpu0 is None and time.perf_counter() >= warm:
                cpu0 = time.process_time()
            r, c = pool[int(rng.integers(len(pool)))]
            x = images[int(rng.integers(len(images)))][None]
            t0 = time.perf_counter()
            if mode == "switching":
                rt.set_preference([float(v) for v in r], float(c))
            rt.infer(x)
            if t0 >= warm:
                lat.append(time.perf_counter() - t0)
        cpu = time.process_time() - (cpu0 if cpu0 is not None else time.process_time())
        out[mode] = {"throughput_rps": len(lat) / seconds, "cpu_ms_per_request": 1e3 * cpu / max(1, len(lat)), "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                     "p99_ms": 1e3 * float(np.percentile(lat, 99)), "requests": len(lat)}
    rt.close()
    return out


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (delay, rows) in enumerate(result["triton"].items()):
        cs = [r["concurrency"] for r in rows]
        a.plot(cs, [r["throughput_rps"] for r in rows], "o-", color=f"C{i}", label=f"Triton, queue delay {delay} µs")
        b.plot(cs, [r["p50_ms"] for r in rows], "o-", color=f"C{i}", label=f"p50, delay {delay} µs")
        b.plot(cs, [r["p99_ms"] for r in rows], "x--", color=f"C{i}", label=f"p99, delay {delay} µs")
    for mode, style in (("switching", ":"), ("fixed", "-.")):
        a.axhline(result["in_process"][mode]["throughput_rps"], ls=style, color="k",
                  label=f"in-process Runtime ({mode} preference)")
    a.set_xlabel("concurrent clients")
    a.set_ylabel("requests/s (1 image each)")
    a.set_xscale("log", base=2)
    a.legend(fontsize=7)
    b.set_xlabel("concurrent clients")
    b.set_ylabel("latency (ms)")
    b.set_xscale("log", base=2)
    b.legend(fontsize=6)
    fig.suptitle(f"dymu-rt on tritonserver (Python backend, CPU, {os.cpu_count()} cores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per point (after 1 s warm-up)")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--delays", default="0,500,2000", help="max_queue_delay_microseconds values")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON in --out")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads((args.out / "bench_triton.json").read_text()), args.out / "bench_triton.png")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("error: terminated"))    # stop servers on the way out
    files, why = find_server()
    if files is None:
        sys.exit(f"error: no tritonserver here: {why}")
    from dymu_rt.bundle.layout import default_bundle_path, read_manifest
    from dymu_rt.serve.triton import export_triton

    tmp = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    try:
        bundle = prune_bundle(default_bundle_path(), tmp / "bundle", 3)
        base = tmp / "repo"
        export_triton(bundle, base, backend="python", max_batch=8)
        pool = request_pool(read_manifest(bundle).points, 40, 0)
        images = np.random.default_rng(1).random((16, 3, 64, 64), dtype=np.float32)
        result = {"bundle": "shipped bundle pruned to 3 topologies (64x64, 3 tasks)",
                  "client": "own gRPC client loop (perf_analyzer unavailable)", "seconds": args.seconds,
                  "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                  "server": "nvidia-pytriton tritonserver, --backend python, 1 thread/instance", "triton": {}}
        runs = []
        for delay in [int(d) for d in args.delays.split(",")]:
            # the in-process reference before each server (no server running): the machine is
            # shared, so it is measured as often as the server and summarized by the median
            runs.append(in_process(bundle, pool, images, args.seconds, 2 + delay))
            print(f"in-process {json.dumps(runs[-1])} load {os.getloadavg()[0]:.1f}", flush=True)
            repo = tmp / f"repo-{delay}"
            shutil.copytree(base, repo)
            set_queue_delay(repo, delay)
            rows = []
            with TritonServer(repo, log=tmp / f"server-{delay}.log") as server:
                for c in [int(x) for x in args.concurrency.split(",")]:
                    n, lat, errors, wall, cpu = client_loop(server, pool, images, c, args.seconds, 10 * c)
                    row = {"concurrency": c, "requests": n, "errors": errors, "throughput_rps": n / wall,
                           "server_cpu_ms_per_request": 1e3 * cpu[0] / max(1, n),
                           "client_cpu_ms_per_request": 1e3 * cpu[1] / max(1, n),
                           "load_avg_1min": os.getloadavg()[0],
                           "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99))}
                    rows.append(row)
                    print(f"delay {delay} us  {json.dumps(row)}", flush=True)
            result["triton"][str(delay)] = rows
        result["in_process_runs"] = runs
        result["in_process"] = {mode: {k: float(np.median([r[mode][k] for r in runs]))
                                       for k in ("throughput_rps", "cpu_ms_per_request", "p50_ms", "p99_ms")}
                                for mode in runs[0]}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_triton.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, args.out / "bench_triton.png")
        print(f"wrote {args.out / 'bench_triton.json'} and .png")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
