"""Golden bundles: build the committed tiny runs' bundles and compare every file's sha256 with
the committed golden (issue 26's safety net: moving the build around must not change a byte).

    python scripts/golden_bundles.py                 # check: exit 0 when every file matches
    python scripts/golden_bundles.py --regenerate    # rewrite tests/compile/golden/bundles.json
    python scripts/golden_bundles.py --make-runs     # rewrite the committed runs (then --regenerate)
    python scripts/golden_bundles.py --matrix        # check under OMP_NUM_THREADS 1/2 x
                                                     # ATEN_CPU_CAPABILITY default/avx2/avx512

The runs (``tests/compile/golden/runs/``: a DYMU run, an AdaShare run, two DAG runs of
``run_fixture.micro_preset``, random weights, ~2 MB) are committed, so the golden does not
depend on how torch initializes a net. Each is built with ``build_bundle`` from a copy in a
temporary folder, addressed by a relative path (the manifest records the run folder). The
golden records the revision it was made from and the torch/onnx versions: ONNX export bytes
depend on them, so :func:`check` refuses to compare against another environment (the test
skips, naming both) instead of failing on a version bump. ``tests/compile/test_golden_bundles.py``
runs :func:`check` in the suite.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "compile" / "golden"
RUNS = GOLDEN_DIR / "runs"
GOLDEN = GOLDEN_DIR / "bundles.json"

#: bundle name -> (run folder under RUNS, build_bundle keywords)
REQUESTS = {
    "dymu": ("dymu", {"step": "0.5", "c_step": "1"}),
    "adashare": ("adashare", {}),
    "dag": ("dag", {}),
    "dag-dead": ("dag-dead", {}),
}


def environment() -> dict[str, str]:
    """What the bytes of an exported graph depend on besides this code."""
    import onnx
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "python": platform.python_version()}


def make_runs() -> None:
    """(Re)write the committed runs from the fixture builders (seeded; only needed when the
    run format changes)."""
    sys.path.insert(0, str(ROOT / "tests" / "compile"))
    from run_fixture import make_static_run, make_tiny_run, micro_preset

    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    make_tiny_run(RUNS / "dymu", preset=micro_preset())
    make_static_run(RUNS / "adashare", "adashare", micro_preset())
    make_static_run(RUNS / "dag", "dag", micro_preset(), mask_seed=1)
    # mask seed 0 keeps edges into a state no task reads out (e5_7, e6_7: modules nothing
    # else calls), which the build once refused; the graph leaves them out now
    make_static_run(RUNS / "dag-dead", "dag", micro_preset(), mask_seed=0)


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def build_all(work: Path) -> dict[str, dict[str, str]]:
    """Build every golden request in ``work`` (runs copied there, relative paths); returns
    {bundle: {file: sha256}}."""
    try:
        from dymu_rt.methods import build_bundle
    except ImportError:                     # revisions before the methods registry (issue 26)
        from dymu_rt.compile.build import build_bundle

    work = Path(work)
    shutil.copytree(RUNS, work / "runs")
    here = os.getcwd()
    os.chdir(work)
    try:
        out = {}
        for name, (run, kw) in REQUESTS.items():
            build_bundle(Path("runs") / run, Path("bundles") / name, progress=False, **kw)
            out[name] = digests(Path("bundles") / name)
        return out
    finally:
        os.chdir(here)


def revision() -> str:
    res = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                         capture_output=True, text=True)
    return res.stdout.strip() or "unknown"


def diff(golden: dict, built: dict) -> list[str]:
    """One line per bundle file whose sha256 differs from the golden's (or is missing)."""
    lines = []
    for name in sorted(golden["bundles"].keys() | built.keys()):
        want, got = golden["bundles"].get(name, {}), built.get(name, {})
        for f in sorted(want.keys() | got.keys()):
            if want.get(f) != got.get(f):
                lines.append(f"{name}/{f}: golden {want.get(f, '-')[:12]} built {got.get(f, '-')[:12]}")
    return lines


def check(work: Path) -> tuple[str | None, list[str]]:
    """(reason the golden does not apply here or None, differing files)."""
    golden = json.loads(GOLDEN.read_text())
    env = environment()
    for key in ("torch", "onnx"):
        if golden["environment"][key] != env[key]:
            return (f"golden made with {key} {golden['environment'][key]}, this is {env[key]}; exported "
                    f"graph bytes depend on it (regenerate: python scripts/golden_bundles.py --regenerate)"), []
    return None, diff(golden, build_all(work))


def matrix() -> int:
    """The check in fresh processes under every thread count x kernel dispatch level."""
    bad = 0
    for threads, cap in itertools.product(("1", "2"), ("default", "avx2", "avx512")):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "ATEN_CPU_CAPABILITY": cap}
        res = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True)
        first = (res.stdout.strip().splitlines() or [res.stderr.strip()[-300:]])[0]
        seen = (res.stderr.strip().splitlines() or ["?"])[-1]
        print(f"OMP_NUM_THREADS={threads} ATEN_CPU_CAPABILITY={cap}: {first} {seen}")
        bad += res.returncode != 0
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--regenerate", action="store_true", help="rewrite the golden from this checkout's build")
    g.add_argument("--make-runs", action="store_true", help="rewrite the committed runs")
    g.add_argument("--matrix", action="store_true", help="check under 2 thread counts x 3 dispatch levels")
    args = ap.parse_args(argv)
    if args.make_runs:
        make_runs()
        print(f"wrote {RUNS}; now run --regenerate")
        return 0
    if args.matrix:
        return matrix()
    with tempfile.TemporaryDirectory() as tmp:
        if args.regenerate:
            built = build_all(Path(tmp))
            GOLDEN.write_text(json.dumps({
                "revision": revision(), "environment": environment(),
                "requests": {k: {"run": r, **kw} for k, (r, kw) in REQUESTS.items()},
                "bundles": built}, indent=1, sort_keys=True) + "\n")
            print(f"wrote {GOLDEN}: {sum(map(len, built.values()))} files of {len(built)} bundles")
            return 0
        reason, differ = check(Path(tmp))
    import torch

    print(f"(torch kernel dispatch {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)",
          file=sys.stderr)
    if reason:
        print(f"not comparable: {reason}")
        return 2
    n = sum(map(len, json.loads(GOLDEN.read_text())["bundles"].values()))
    print(f"{n} golden files: {'identical' if not differ else f'{len(differ)} differ'}")
    for line in differ:
        print("  " + line)
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
