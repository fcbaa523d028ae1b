"""Wall time of `dymu-rt demo` (target: <= 5 min on an idle 2-core machine), alone or next to
one busy process, with the machine's load stated.

    python benchmarks/bench_demo.py                       # the demo alone
    python benchmarks/bench_demo.py --busy 1              # next to one process spinning a core
    python benchmarks/bench_demo.py --cpus 0,1            # pinned to two cores (taskset)
    python benchmarks/bench_demo.py --scale 0.05          # a quick check of the script itself

The demo runs as a user runs it (``python -m dymu_rt.cli demo --out TMP --quiet``, default
threads: all cores the process may use) in a fresh output folder. Reported: wall seconds,
the CPU seconds the demo used (user + system, from ``getrusage`` of the child), so a
machine shared with other work can still be compared (on an idle 2-core machine the wall
time is at least CPU / 2), the demo's own per-step seconds (its summary.json), the load
average before and after, and the share of the machine's CPU time that other processes used
while it ran (from /proc/stat, Linux). Writes one JSON to ``--json`` (default
benchmarks/results/issue25/bench_demo-<alone|busyN>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 300.0


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


SPIN = "import time\nwhile True:\n    pass\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="demo --scale (1 = the real demo)")
    ap.add_argument("--busy", type=int, default=0, help="processes spinning a core next to the demo")
    ap.add_argument("--cpus", default=None, help="pin the demo (and the busy processes) to these cores, "
                                                 "e.g. 0,1 (taskset)")
    ap.add_argument("--threads", type=int, default=None, help="demo --threads (default: the demo's)")
    ap.add_argument("--json", type=Path, default=None, help="where to write the result")
    args = ap.parse_args()

    pin = ["taskset", "-c", args.cpus] if args.cpus else []
    busy = [subprocess.Popen([*pin, sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "demo-out"
            cmd = [*pin, sys.executable, "-m", "dymu_rt.cli", "demo", "--out", str(out), "--quiet",
                   "--scale", str(args.scale)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            load_before = os.getloadavg()
            j0 = _cpu_jiffies()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            j1 = _cpu_jiffies()
            load_after = os.getloadavg()
            if res.returncode != 0:
                sys.exit(f"demo failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
            summary = json.loads((out / "summary.json").read_text())
    finally:
        for p in busy:
            p.kill()
            p.wait()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    others = None
    if j0 and j1:
        # Machine CPU time used by anything but the demo, as a share of all cores over the run.
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = (j1[0] - j0[0]) / hz
        total_s = (j1[1] - j0[1]) / hz
        others = max(0.0, busy_s - cpu) / total_s if total_s > 0 else None
    result = {
        "scale": args.scale, "busy_processes": args.busy, "cpus": args.cpus or f"all ({ncpu})",
        "threads": args.threads, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "target_wall_s_idle_2_cores": TARGET_S,
        "steps_s": {k: round(v, 1) for k, v in summary["seconds"].items()},
        "settings": summary["settings"],
        "load_avg_before": [round(v, 2) for v in load_before], "load_avg_after": [round(v, 2) for v in load_after],
        "other_processes_cpu_share": None if others is None else round(others, 3),
        "machine_cores": os.cpu_count(), "python": sys.version.split()[0],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = args.json or ROOT / "benchmarks" / "results" / "issue25" / \
        f"bench_demo-{'alone' if not args.busy else f'busy{args.busy}'}{'' if args.scale == 1 else f'-scale{args.scale:g}'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".txt").write_text(res.stdout)          # what the demo printed (its summary)
    print(json.dumps(result, indent=2))
    print(f"demo: {wall:.0f} s wall, {cpu:.0f} s CPU (target <= {TARGET_S:.0f} s wall on an idle 2-core machine); "
          f"other processes used {100 * (others or 0):.0f}% of the machine meanwhile -> {path}")


if __name__ == "__main__":
    main()
