"""Wall time of ``dymu-rt --help`` and ``dymu-rt X --help`` for every command, this checkout
against another source tree, runs interleaved (same machine load), and what each loaded.

    git archive 3fa77fc --prefix=old/ | tar -x -C /tmp
    python benchmarks/bench_cli_help.py --baseline-src /tmp/old --runs 7

Each measurement is a fresh ``python -c 'from dymu_rt.cli.main import main; main()' ARGS``
subprocess (this venv's python; ``--baseline-src`` goes first on PYTHONPATH so its dymu_rt
shadows the installed one). Reported per command: the median wall time of ``--runs`` runs in
each tree, their ratio (this / baseline), and whether torch, onnxruntime or matplotlib ended
up in ``sys.modules`` (printed by an ``atexit`` hook); then the cumulative ``python -X importtime``
of ``dymu_rt.cli.main`` (what every invocation pays before parsing). Single-threaded: nothing
here computes.
The machine is shared, so compare numbers within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [[], ["train"], ["train", "anchor"], ["data", "synth"], ["eval"], ["compare"], ["inspect"], ["build"],
            ["plot"], ["run"], ["profile"], ["profiles"], ["calibrate"], ["check"], ["export", "triton"], ["demo"]]
HEAVY = ("torch", "onnxruntime", "matplotlib")
CODE = ("import atexit, json, sys\n"
        f"atexit.register(lambda: sys.stderr.write('LOADED ' + json.dumps(sorted(m for m in {HEAVY!r} "
        "if m in sys.modules)) + '\\n'))\n"
        "from dymu_rt.cli.main import main\nmain(sys.argv[1:])\n")


def _one(src: Path | None, args: list[str]) -> tuple[float, list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(OMP_NUM_THREADS="1", COLUMNS="120")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CODE, *args, "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"error: {' '.join(args)} --help exited {res.returncode}: {res.stderr[-500:]}")
    loaded = next((json.loads(l[7:]) for l in res.stderr.splitlines() if l.startswith("LOADED ")), None)
    return dt, loaded


def _importtime(src: Path) -> float:
    """Seconds ``python -X importtime`` reports for ``import dymu_rt.cli.main`` (cumulative)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(src)
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import dymu_rt.cli.main"], capture_output=True,
                         text=True, env=env, timeout=120)
    line = next(l for l in res.stderr.splitlines()[::-1] if l.rstrip().endswith("| dymu_rt.cli.main"))
    return int(line.split("|")[1]) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-src", type=Path, required=True, help="source tree to compare with (has dymu_rt/)")
    ap.add_argument("--runs", type=int, default=5, help="runs per command and tree (median reported)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    if not (args.baseline_src / "dymu_rt").is_dir():
        print(f"error: --baseline-src {args.baseline_src}: expected a source tree with a dymu_rt/ folder",
              file=sys.stderr)
        return 2
    if args.runs < 1:
        print(f"error: --runs {args.runs}: expected an integer >= 1", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parents[1]
    rows = []
    print(f"{'command':<22} {'this s':>8} {'base s':>8} {'ratio':>6}  loaded (this | base)")
    for cmd in COMMANDS:
        t_new, t_old, l_new, l_old = [], [], None, None
        for _ in range(args.runs):               # interleaved: both trees see the same load
            dt, l_new = _one(here, cmd)
            t_new.append(dt)
            dt, l_old = _one(args.baseline_src, cmd)
            t_old.append(dt)
        row = {"command": " ".join(["dymu-rt", *cmd, "--help"]), "this_s": statistics.median(t_new),
               "baseline_s": statistics.median(t_old), "this_loaded": l_new, "baseline_loaded": l_old}
        row["ratio"] = row["this_s"] / row["baseline_s"]
        rows.append(row)
        print(f"{' '.join(cmd) or '(root)':<22} {row['this_s']:8.3f} {row['baseline_s']:8.3f} {row['ratio']:6.2f}  "
              f"{','.join(l_new) or '-'} | {','.join(l_old) or '-'}")
    t_new, t_old = [], []
    for _ in range(args.runs):                   # interleaved, as above
        t_new.append(_importtime(here))
        t_old.append(_importtime(args.baseline_src))
    imp = {"this_s": statistics.median(t_new), "baseline_s": statistics.median(t_old)}
    rows.append({"command": "python -X importtime -c 'import dymu_rt.cli.main' (cumulative)", **imp,
                 "ratio": imp["this_s"] / imp["baseline_s"]})
    print(f"{'importtime cli.main':<22} {imp['this_s']:8.3f} {imp['baseline_s']:8.3f} "
          f"{imp['this_s'] / imp['baseline_s']:6.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; {args.runs} runs per cell, 1 thread")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
