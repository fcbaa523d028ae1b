"""Cold start of `dymu-rt run` on the shipped bundle: import + open + first inference.

    python benchmarks/bench_cold_start.py                                  # this checkout's venv
    python benchmarks/bench_cold_start.py --baseline /work/main/.venv --baseline-cwd /work/main
    git archive 03d6c96 --prefix=old/ | tar -x -C /tmp                     # an older source tree...
    python benchmarks/bench_cold_start.py --baseline-src /tmp/old          # ...run by this venv's python

Each measurement is a fresh subprocess (nothing cached in the interpreter; the OS file cache
is warm after the first run, as it is for a user who runs the command twice). Two numbers
per environment, medians of ``--runs`` runs, runs of the environments interleaved so both
see the same machine load:

* ``cli_s``: wall time of the whole command ``dymu-rt run IMG --r 0.6,0.2,0.2 --c 0.5
  --out DIR --json`` (interpreter start, imports, open, first inference, PNGs written);
* the phases inside one interpreter (``python -c``): ``import_s`` (``from dymu_rt.runtime
  import Runtime``), ``open_s`` (``Runtime.open`` of the shipped bundle), ``first_infer_s``
  (``set_preference`` + the first ``infer`` of one image), and ``torch_loaded`` (whether
  torch ended up imported).

Threads: OMP_NUM_THREADS=1 and the x86-64-cpu profile's own setting (the shipped default).
The machine this runs on is shared, so compare numbers within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
from dymu_rt.runtime import Runtime, default_bundle_path
t1 = time.perf_counter()
rt = Runtime.open(default_bundle_path())
t2 = time.perf_counter()
from PIL import Image
rt.set_preference([0.6, 0.2, 0.2], 0.5)
rt.infer([Image.open(sys.argv[1]).convert("RGB")])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_infer_s": t3 - t2,
                  "torch_loaded": "torch" in sys.modules}))
"""


def _env(src: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", COLUMNS="120")
    if src is not None:
        env["PYTHONPATH"] = str(src)          # the source tree's dymu_rt shadows the installed one
    return env


def _cli(venv: Path, src: Path | None) -> list[str]:
    """The `dymu-rt` command: the venv's console script, or for a source tree the CLI entry of
    that tree (top-level `cli.main` before issue 15, `dymu_rt.cli.main` after) run by the venv."""
    if src is None:
        return [str(venv / "bin" / "dymu-rt")]
    mod = "cli.main" if (src / "cli" / "main.py").is_file() and not (src / "cli" / "__main__.py").is_file() \
        else "dymu_rt.cli.main"
    return [str(venv / "bin" / "python"), "-c", f"import sys; sys.argv[0] = 'dymu-rt'; from {mod} import main; main()"]


def _one(venv: Path, cwd: Path, image: Path, out: Path, src: Path | None = None) -> dict:
    py = venv / "bin" / "python"
    t0 = time.perf_counter()
    res = subprocess.run([*_cli(venv, src), "run", str(image), "--r", "0.6,0.2,0.2", "--c", "0.5", "--out",
                          str(out), "--json"], cwd=cwd, env=_env(src), capture_output=True, text=True, timeout=600)
    cli_s = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"error: `dymu-rt run` failed in {venv}: {res.stderr.strip().splitlines()[-1:]}")
    res = subprocess.run([str(py), "-c", PHASES, str(image)], cwd=cwd, env=_env(src), capture_output=True,
                         text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"error: the phase script failed in {venv}: {res.stderr.strip().splitlines()[-1:]}")
    return {"cli_s": cli_s, **json.loads(res.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="Cold start of `dymu-rt run` (median of fresh subprocesses).")
    ap.add_argument("--venv", type=Path, default=root / ".venv", help="environment measured (default: ./.venv)")
    ap.add_argument("--cwd", type=Path, default=root, help="working directory of its runs")
    ap.add_argument("--baseline", type=Path, default=None, help="a second environment to compare with")
    ap.add_argument("--baseline-cwd", type=Path, default=None, help="working directory of the baseline's runs")
    ap.add_argument("--baseline-src", type=Path, default=None, help="a source tree (e.g. an older commit, "
                    "`git archive`d) run by --venv's interpreter as the baseline")
    ap.add_argument("--runs", type=int, default=5, help="runs per environment (median reported)")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.runs < 1:
        print(f"error: --runs {args.runs}: expected an integer >= 1", file=sys.stderr)
        return 2
    envs = {"candidate": (args.venv, args.cwd, None)}
    if args.baseline is not None and args.baseline_src is not None:
        print("error: give --baseline (an environment) or --baseline-src (a source tree), not both", file=sys.stderr)
        return 2
    if args.baseline is not None:
        envs["baseline"] = (args.baseline, args.baseline_cwd or args.cwd, None)
    if args.baseline_src is not None:
        if not (args.baseline_src / "dymu_rt").is_dir():
            print(f"error: --baseline-src {args.baseline_src}: no dymu_rt/ folder there", file=sys.stderr)
            return 2
        envs["baseline"] = (args.venv, args.baseline_src, args.baseline_src.resolve())
    for name, (venv, _, _) in envs.items():
        if not (venv / "bin" / "dymu-rt").is_file():
            print(f"error: --{'venv' if name == 'candidate' else 'baseline'} {venv}: no bin/dymu-rt there",
                  file=sys.stderr)
            return 2
    import numpy as np
    from PIL import Image

    rows: dict[str, list[dict]] = {k: [] for k in envs}
    with tempfile.TemporaryDirectory(prefix="dymu-cold-") as tmp:
        image = Path(tmp) / "scene.png"
        Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(image)
        for i in range(args.runs + 1):                    # run 0 warms the OS file cache, not counted
            for name, (venv, cwd, src) in envs.items():
                r = _one(venv, cwd, image, Path(tmp) / f"out-{name}-{i}", src)
                if i:
                    rows[name].append(r)
    report = {"runs": args.runs, "threads": "OMP_NUM_THREADS=1, profile x86-64-cpu", "results": {}}
    for name, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("cli_s", "import_s", "open_s", "first_infer_s")}
        med["torch_loaded"] = any(r["torch_loaded"] for r in rs)
        med["venv"] = str(envs[name][0]) + (f" running {envs[name][2]}" if envs[name][2] else "")
        report["results"][name] = med
    for name, m in report["results"].items():
        print(f"{name:10s} {m['venv']}: dymu-rt run {m['cli_s']:.3f} s (median of {args.runs}); in-process: "
              f"import {m['import_s']:.3f} s + open {m['open_s']:.3f} s + first inference "
              f"{m['first_infer_s']:.3f} s; torch imported: {m['torch_loaded']}")
    if "baseline" in report["results"]:
        b, c = report["results"]["baseline"], report["results"]["candidate"]
        print(f"candidate / baseline: dymu-rt run {c['cli_s'] / b['cli_s']:.2f}x, "
              f"import {c['import_s'] / b['import_s']:.2f}x")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
