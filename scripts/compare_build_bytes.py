"""Build one run's bundle with another revision's code and with this checkout's, and compare
every file byte for byte (issue 26: a move of modules must not change a bundle).

    python scripts/compare_build_bytes.py --rev pre-core --run runs/full22/new-s0 [--grid 0.1 --c-grid 0.25]

The other revision is exported with ``git archive`` into a temporary folder and put first on
PYTHONPATH of its build process (``dymu_rt.methods.build_bundle``, or
``dymu_rt.compile.build.build_bundle`` in revisions before the methods registry). Both builds run with 1 thread, so float results do not depend on the thread count.
Exit 0 when every file is identical, 1 otherwise (the differing files are printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from golden_bundles import digests  # noqa: E402  (one home for a bundle's per-file sha256)
# dymu_rt.methods.build_bundle since the methods registry (issue 26); compile.build's before it
BUILD = ("import sys\ntry:\n    from dymu_rt.methods import build_bundle\nexcept ImportError:\n"
         "    from dymu_rt.compile.build import build_bundle\n"
         "build_bundle(sys.argv[1], sys.argv[2], step=sys.argv[3], c_step=sys.argv[4])\n"
         "import dymu_rt\nprint('DYMU_RT_FROM', dymu_rt.__file__)")


def build(code_root: Path, run: Path, out: Path, grid: str, c_grid: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    # cwd outside any checkout: `python -c` puts the working directory first on sys.path, ahead of
    # PYTHONPATH, so run from a repository root both builds would import that root's dymu_rt (and
    # "identical" would compare a checkout with itself).
    done = subprocess.run([sys.executable, "-c", BUILD, str(run), str(out), grid, c_grid], env=env, check=True,
                          stdout=subprocess.PIPE, text=True, cwd=str(Path(out).parent))
    used = [ln.split(" ", 1)[1] for ln in done.stdout.splitlines() if ln.startswith("DYMU_RT_FROM ")]
    if not used or not Path(used[-1]).resolve().is_relative_to(code_root.resolve()):
        raise SystemExit(f"error: the build meant to run {code_root}'s code imported {used[-1] if used else '?'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", required=True, help="git revision whose code builds the 'before' bundle")
    ap.add_argument("--run", type=Path, required=True, help="a finished DYMU run folder")
    ap.add_argument("--grid", default="0.1")
    ap.add_argument("--c-grid", default="0.25")
    args = ap.parse_args(argv)
    if not (args.run / "config.json").is_file():
        print(f"error: --run {args.run}: not a run folder (no config.json)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "code"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev], capture_output=True)
        if archive.returncode != 0:
            print(f"error: --rev {args.rev}: {archive.stderr.decode().strip()}", file=sys.stderr)
            return 2
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        build(old, args.run.resolve(), tmp / "before", args.grid, args.c_grid)
        build(ROOT, args.run.resolve(), tmp / "after", args.grid, args.c_grid)
        before, after = digests(tmp / "before"), digests(tmp / "after")
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(f"{len(before)} files built by {args.rev}, {len(after)} by this checkout: "
          f"{'identical' if not differ else f'{len(differ)} differ'}")
    for k in differ:
        print(f"  {k}: {before.get(k, '-')[:12]} -> {after.get(k, '-')[:12]}")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
