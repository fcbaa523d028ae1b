"""Anchor-stage training throughput at the nyuv2 preset: 1 vs 2 processes, loader vs step.

    python benchmarks/bench_train.py [--preset nyuv2] [--batch 2] [--steps 2] [--warmup 1]
                                     [--loader-batches 6] [--out bench_train.json]

Measures, in one run (the machine is shared: compare the ratios, not the absolute rates):

1. **Training throughput** (samples/s) of the real anchor stage (``train_anchor``: forward,
   fp32 losses, backward, Adam step; DDP under torchrun) at the preset's full size with the
   same global batch, for: 1 process x 1 thread, 2 processes x 1 thread each (``torchrun
   --nproc-per-node 2``, gloo, each rank half of the batch) and 1 process x 2 threads (the
   same two cores used by intra-op threads instead). The scaling ratio is 2-process rate /
   1-process-1-thread rate; on 2 cores it cannot exceed 2. Each configuration runs
   ``--warmup`` untimed steps then ``--steps`` timed ones; the training scenes are few
   enough to stay in the render cache, so the timed steps measure training, not rendering.
2. **Input pipeline alone** (``BatchStream``: the DataLoader the stages use, procedural
   scenes rendered inside the workers, augmentation, collation) over a split too large to
   cache, with ``--workers 2`` and 0, against the 1-process training step rate. Target:
   the loader delivers >= 3x the batches the step consumes with 2 workers. (Measured apart:
   in a real run the workers share the cores with the step.)

Threads are pinned: every process runs with OMP_NUM_THREADS / torch.set_num_threads as
stated in its row. Writes a JSON report and a PNG bar chart next to it.

``--device cuda`` measures one GPU instead: the anchor step at fp32, bf16 and bf16 with
channels-last (one process, same batch), and the loader with ``--gpu-workers`` workers
against the fastest of those step rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(args: argparse.Namespace) -> None:
    """One configuration (a plain process, or each rank under torchrun): timed anchor steps."""
    import torch

    torch.set_num_threads(args.threads)
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.setup import TrainSetup

    setup = TrainSetup.create(device="cpu", workers=0)
    per_step = _timed_steps(RunDir(args.bench_run), setup, args)
    if setup.dist.is_main:
        Path(args.bench_report).write_text(json.dumps({"s_per_step": per_step, "world_size": setup.dist.world_size,
                                                       "threads": args.threads}))
    setup.dist.close()


def _timed_steps(run, setup, args) -> float:
    """Seconds per anchor step after ``--warmup`` steps (CUDA synchronized at each stamp)."""
    import torch

    from dymu_rt.training.anchor import train_anchor

    stamps: list[float] = []

    def stamp(step: int) -> None:
        if setup.dev.is_cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    train_anchor(run, seed=0, save_every=10**9, n_train=args.batch, n_val=2, progress=False,
                 stop_after=args.warmup + args.steps, on_step=stamp, setup=setup)
    timed = stamps[args.warmup - 1:]
    return (timed[-1] - timed[0]) / (len(timed) - 1)


def _gpu(args) -> dict:
    """One GPU: anchor step rate per precision, and the loader with many workers."""
    import torch

    from dymu_rt.models.presets import get_preset
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.device import DeviceSetup
    from dymu_rt.training.setup import TrainSetup

    report = {"preset": args.preset, "batch": args.batch, "device": torch.cuda.get_device_name(0),
              "cpu_count": os.cpu_count(), "torch": torch.__version__, "training": [], "loader": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for i, (precision, cl) in enumerate((("fp32", False), ("bf16", False), ("bf16", True))):
            name = f"cuda {precision}{' channels-last' if cl else ''}"
            print(f"training: {name} ...", flush=True)
            run = RunDir(Path(tmp) / f"r{i}")
            run.init(get_preset(args.preset).with_train(anchor_batch=args.batch), data="synth")
            setup = TrainSetup(DeviceSetup.create("cuda", precision, cl))
            dt = _timed_steps(run, setup, args)
            report["training"].append({"config": name, "processes": 1, "global_batch": args.batch,
                                       "s_per_step": dt, "samples_per_s": args.batch / dt,
                                       "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30})
            torch.cuda.reset_peak_memory_stats()
    for workers in (args.gpu_workers, 0):
        print(f"loader: {workers} workers ...", flush=True)
        report["loader"].append(_loader_rate(args, workers))
    return report


def _env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _train_config(args, tmp: Path, name: str, nproc: int, threads: int) -> dict:
    from dymu_rt.models.presets import get_preset
    from dymu_rt.run.layout import RunDir

    run = RunDir(tmp / name)
    run.init(get_preset(args.preset).with_train(anchor_batch=args.batch), data="synth")
    report = tmp / f"{name}.json"
    cmd = [str(Path(__file__).resolve()), "--worker", "--bench-run", str(run.path), "--bench-report", str(report),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(threads)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc > 1 else [sys.executable]
    subprocess.run(launcher + cmd, env=_env(threads), check=True, cwd=ROOT)
    r = json.loads(report.read_text())
    return {"config": name, "processes": nproc, "threads_per_process": threads, "global_batch": args.batch,
            "s_per_step": r["s_per_step"], "samples_per_s": args.batch / r["s_per_step"]}


def _loader_rate(args, workers: int) -> dict:
    from dymu_rt.models.presets import get_preset
    from dymu_rt.training.common import make_split
    from dymu_rt.training.loader import BatchStream

    preset = get_preset(args.preset)
    # 1600 scenes at the preset's size do not fit the render cache: every sample is rendered.
    data = make_split(preset, "synth", "train", n=1600, augment=True, seed=0)
    with BatchStream(data, args.batch, seed=0, workers=workers) as stream:
        next(stream)                                  # workers started, first batch ready
        t = time.perf_counter()
        for _ in range(args.loader_batches):
            next(stream)
        dt = (time.perf_counter() - t) / args.loader_batches
    return {"workers": workers, "s_per_batch": dt, "samples_per_s": args.batch / dt}


def _png(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r["config"], r["samples_per_s"]) for r in report["training"]] + \
           [(f"loader alone, {r['workers']} workers", r["samples_per_s"]) for r in report["loader"]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh([n for n, _ in rows][::-1], [v for _, v in rows][::-1], color=["#4c72b0"] * len(report["loader"]) +
            ["#dd8452"] * len(report["training"]))
    ax.set_xscale("log")
    ax.set_xlabel("samples / s (log scale)")
    where = report.get("device", f"this CPU ({report.get('cpu_count')} cores, shared)")
    ax.set_title(f"{report['preset']} anchor stage on {where}, global batch {report['batch']}")
    for i, (_, v) in enumerate(rows[::-1]):
        ax.text(v, i, f" {v:.3g}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="nyuv2")
    ap.add_argument("--batch", type=int, default=2, help="global batch (split over the processes)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--loader-batches", type=int, default=6)
    ap.add_argument("--out", default="bench_train.json")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--gpu-workers", type=int, default=8, help="loader workers measured with --device cuda")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bench-run", help=argparse.SUPPRESS)
    ap.add_argument("--bench-report", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)
    if args.batch % 2 or args.steps < 1 or args.warmup < 1:
        sys.exit("error: --batch must be even (it is split over 2 processes), --steps and --warmup >= 1")

    import torch
    from rich.console import Console
    from rich.table import Table

    if args.device == "cuda":
        report = _gpu(args)
        best = max(r["samples_per_s"] for r in report["training"])
        for r in report["training"]:
            r["speedup_vs_fp32"] = r["samples_per_s"] / report["training"][0]["samples_per_s"]
        for r in report["loader"]:
            r["loader_to_step_ratio"] = r["samples_per_s"] / best
        out = Path(args.out)
        out.write_text(json.dumps(report, indent=2))
        _png(report, out.with_suffix(".png"))
        print(json.dumps(report, indent=2))
        return

    torch.set_num_threads(1)
    report = {"preset": args.preset, "batch": args.batch, "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "note": "shared machine: compare ratios within this run", "training": [], "loader": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for name, nproc, threads in (("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1),
                                     ("1 process x 2 threads", 1, 2)):
            print(f"training: {name} ...", flush=True)
            report["training"].append(_train_config(args, Path(tmp), name.replace(" ", "_"), nproc, threads))
            report["training"][-1]["config"] = name
    for workers in (2, 0):
        print(f"loader: {workers} workers ...", flush=True)
        report["loader"].append(_loader_rate(args, workers))
    base = report["training"][0]["samples_per_s"]
    for r in report["training"]:
        r["speedup_vs_1x1"] = r["samples_per_s"] / base
    for r in report["loader"]:
        r["loader_to_step_ratio"] = r["samples_per_s"] / base
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2))
    _png(report, out.with_suffix(".png"))

    table = Table(title=f"{args.preset} anchor stage, global batch {args.batch} (this CPU, shared: ratios)")
    for col in ("what", "s / step or batch", "samples / s", "ratio"):
        table.add_column(col, justify="right" if col != "what" else "left")
    for r in report["training"]:
        table.add_row(f"train: {r['config']}", f"{r['s_per_step']:.2f}", f"{r['samples_per_s']:.4f}",
                      f"{r['speedup_vs_1x1']:.2f}x vs 1x1")
    for r in report["loader"]:
        table.add_row(f"loader alone: {r['workers']} workers", f"{r['s_per_batch']:.2f}",
                      f"{r['samples_per_s']:.3f}", f"{r['loader_to_step_ratio']:.1f}x the 1x1 step rate")
    Console().print(table)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
