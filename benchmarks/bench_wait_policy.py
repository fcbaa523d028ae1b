"""The demo alone and next to a busy process, under each OpenMP wait policy.

    python benchmarks/bench_wait_policy.py [--scale 0.03] [--threads 2] [--busy 1]
                                           [--repeats 1] [--out bench-out/wait_policy]

Runs ``dymu-rt demo --scale S --threads T --quiet`` in a fresh process for each wait policy
(``passive``: what dymu-rt now sets before torch is imported; ``default``: torch imported
first, so OpenMP keeps its own default, which spins a while after each parallel region;
``active``: OMP_WAIT_POLICY=ACTIVE, spin always) and each load (``alone``; ``busy``: next to
``--busy`` processes that spin on a core, as another user's job would). Reports wall
seconds, the training step's seconds (from the demo's summary) and the ratios to
passive/alone, measured within this one run. Rounds are interleaved, so slow drift of the
machine's other load hits every configuration alike; on a shared machine "alone" means
"without our busy process", not idle: the report prints the 1-minute load average seen
before each run.
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
TRAIN_KEY = "train (anchor -> edge hypernet -> weight hypernet)"


def _demo(policy: str, scale: float, threads: int, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["MPLCONFIGDIR"] = str(out / "mpl")
    first = ""
    if policy == "active":
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    elif policy == "default":
        first = "import torch; "            # OpenMP loaded before dymu_rt can set a policy
    code = (f"{first}import sys; from dymu_rt.cli.main import main; "
            f"main(['demo', '--out', {str(out / 'demo')!r}, '--scale', '{scale}', '--threads', '{threads}', '--quiet'])")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"demo failed ({policy}): {p.stderr[-2000:]}")
    summary = json.loads((out / "demo" / "summary.json").read_text())
    return {"wall_s": wall, "train_s": summary["seconds"][TRAIN_KEY]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--busy", type=int, default=1, help="spinning processes next to the demo in 'busy' runs")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--policies", default="passive,default,active")
    ap.add_argument("--out", type=Path, default=Path("bench-out/wait_policy"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    policies = args.policies.split(",")
    rows = []
    for rep in range(args.repeats):
        for load in ("alone", "busy"):
            for policy in policies:
                spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                            for _ in range(args.busy if load == "busy" else 0)]
                try:
                    load1 = os.getloadavg()[0]
                    with tempfile.TemporaryDirectory() as tmp:
                        r = _demo(policy, args.scale, args.threads, Path(tmp))
                finally:
                    for s in spinners:
                        s.kill()
                        s.wait()
                rows.append({"repeat": rep, "load": load, "policy": policy, "loadavg_1m": load1, **r})
                print(f"{load:5s} {policy:8s} wall {r['wall_s']:7.1f} s  train {r['train_s']:7.1f} s  "
                      f"(load avg {load1:.1f})", flush=True)

    def med(load, policy, key):
        v = sorted(r[key] for r in rows if r["load"] == load and r["policy"] == policy)
        return v[len(v) // 2]

    base = med("alone", "passive", "wall_s")
    table = [{"load": load, "policy": policy, "wall_s": med(load, policy, "wall_s"),
              "train_s": med(load, policy, "train_s"), "wall_vs_passive_alone": med(load, policy, "wall_s") / base}
             for load in ("alone", "busy") for policy in policies]
    result = {"scale": args.scale, "threads": args.threads, "busy_processes": args.busy, "cpus": os.cpu_count(),
              "repeats": args.repeats, "runs": rows, "table": table}
    (args.out / "wait_policy.json").write_text(json.dumps(result, indent=2))
    print(f"\ndemo --scale {args.scale} --threads {args.threads}, {os.cpu_count()} CPUs, busy = {args.busy} "
          f"spinning process(es); medians of {args.repeats}")
    print("| load | policy | wall s | train s | wall / passive-alone |\n|---|---|---|---|---|")
    for t in table:
        print(f"| {t['load']} | {t['policy']} | {t['wall_s']:.1f} | {t['train_s']:.1f} | {t['wall_vs_passive_alone']:.2f} |")


if __name__ == "__main__":
    main()
