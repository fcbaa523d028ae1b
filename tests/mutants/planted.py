"""Apply planted bugs (tests/mutants/mutants.py) one at a time in a throw-away copy of the
package and run the tests that must catch each (docs/testing.md, "Planted bugs").

Never touches the working tree: every mutant gets its own copy under a temporary folder
(hard links to a pristine copy, the one mutated file rewritten), and its tests run with
that copy first on the import path — both in the pytest process (cwd = the copy) and in
any ``dymu-rt`` subprocess a test starts (``PYTHONPATH``).

    python tests/mutants/planted.py            # every mutant, a table, exit 1 on any survivor
    python tests/mutants/planted.py fold-no-sqrt delta-t-sign   # just these

A mutant's result:

* ``killed``   its tests failed (pytest exit 1): the guard works;
* ``SURVIVED`` its tests passed: a real bug of this kind would ship green;
* ``STALE``    its snippet is not in its file exactly once: the code moved or changed, so
  the list must be updated (the message says where the snippet is now, if anywhere);
* ``ERROR``    pytest could not run the tests (collection error, no tests, timeout).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from mutants import MUTANTS, Mutant  # noqa: E402

#: the installed layout: top-level folders that install as subpackages of dymu_rt
TIMEOUT_S = 300


@dataclass
class Result:
    mutant: Mutant
    status: str            # killed | SURVIVED | STALE | ERROR
    seconds: float
    detail: str = ""


def source_file(rel: str, root: Path | None = None) -> Path:
    """Where package path ``rel`` lives: under ``root`` (a copy) or in the working tree."""
    return (root if root is not None else REPO) / rel


def _package_files(root: Path | None):
    """(installed path, file) of every .py file of the package."""
    if root is not None:
        yield from ((str(p.relative_to(root)), p) for p in (root / "dymu_rt").rglob("*.py"))
        return
    yield from ((f"dymu_rt/{p.relative_to(REPO / 'dymu_rt')}", p) for p in (REPO / "dymu_rt").rglob("*.py"))


def _ignore(_dir, names):
    return [n for n in names if n in ("__pycache__", ".pytest_cache", ".hypothesis") or n.endswith(".pyc")]


def pristine_copy(dst: Path) -> Path:
    """dymu_rt, tests/ and pyproject.toml."""
    shutil.copytree(REPO / "dymu_rt", dst / "dymu_rt", ignore=_ignore)
    shutil.copytree(REPO / "tests", dst / "tests", ignore=_ignore)
    shutil.copy2(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _where(snippet: str, root: Path | None) -> list[str]:
    """Package files that hold ``snippet`` (for the stale-mutant message)."""
    return sorted(rel for rel, p in _package_files(root) if snippet in p.read_text(encoding="utf-8", errors="replace"))


def check_snippet(m: Mutant, root: Path | None = None) -> str:
    """'' when ``m.snippet`` occurs exactly once in ``m.file`` (in copy ``root``, or in the
    working tree), else why not."""
    path = source_file(m.file, root)
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    n = 0 if text is None else text.count(m.snippet)
    if n == 1:
        return ""
    if n > 1:
        return f"snippet occurs {n} times in {m.file}; make it unique"
    now = _where(m.snippet, root)
    hint = f"it is now in {', '.join(now)}" if now else "it is nowhere in the package"
    what = "file is gone" if text is None else "snippet not found"
    return (f"stale mutant '{m.name}' ({m.behaviour}): {what} in {m.file}; {hint}. Update its entry in "
            f"tests/mutants/mutants.py (file, snippet) so it plants the same bug in the moved code")


def run_one(m: Mutant, base: Path, work: Path) -> Result:
    t0 = time.monotonic()
    why = check_snippet(m, base)
    if why:
        return Result(m, "STALE", 0.0, why)
    dst = work / m.name
    shutil.copytree(base, dst, copy_function=os.link)       # hard links: cheap, and only
    target = dst / m.file                                     # the mutated file is rewritten
    text = target.read_text(encoding="utf-8")
    target.unlink()
    target.write_text(text.replace(m.snippet, m.replacement, 1), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(dst) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "DYMU_RT_PLANTED_BUG": m.name}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
           *m.tests]
    try:
        proc = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Result(m, "ERROR", time.monotonic() - t0, f"timed out after {TIMEOUT_S} s")
    finally:
        shutil.rmtree(dst, ignore_errors=True)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
    status = {0: "SURVIVED", 1: "killed"}.get(proc.returncode, "ERROR")
    return Result(m, status, time.monotonic() - t0, tail if status != "killed" else tail.splitlines()[-1:][0])


def check_imports(base: Path) -> None:
    """The copy, not the working tree, is what a test imports (else nothing is tested)."""
    code = "import dymu_rt, dymu_rt.cli; print(dymu_rt.__file__); print(dymu_rt.cli.__file__)"
    env = {**os.environ, "PYTHONPATH": str(base)}
    out = subprocess.run([sys.executable, "-c", code], cwd=base, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(base.resolve()) for p in out):
        raise RuntimeError(f"the mutant copy is not what Python imports: {out}")


def run(names: list[str] | None = None, jobs: int | None = None) -> list[Result]:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    unknown = set(names or ()) - {m.name for m in MUTANTS}
    if unknown:
        raise SystemExit(f"error: unknown mutant(s) {sorted(unknown)}")
    jobs = jobs or int(os.environ.get("DYMU_RT_MUTANT_JOBS", "2"))
    with tempfile.TemporaryDirectory(prefix="dymu-mutants-") as tmp:
        base = pristine_copy(Path(tmp) / "base")
        check_imports(base)
        work = Path(tmp) / "m"
        work.mkdir()
        # The slowest first, so the two workers finish together.
        order = sorted(chosen, key=lambda m: -m.cost_s)
        with cf.ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(lambda m: run_one(m, base, work), order))
    by_name = {r.mutant.name: r for r in results}
    return [by_name[m.name] for m in chosen]


def table(results: list[Result]) -> str:
    lines = [f"{'mutant':34} {'status':9} {'s':>6}  behaviour"]
    for r in results:
        lines.append(f"{r.mutant.name:34} {r.status:9} {r.seconds:6.1f}  {r.mutant.behaviour}")
    return "\n".join(lines)


def failures(results: list[Result]) -> list[str]:
    return [f"{r.status} {r.mutant.name} ({r.mutant.behaviour}; {r.mutant.file}; tests {' '.join(r.mutant.tests)}):"
            f"\n    {r.detail}" for r in results if r.status != "killed"]


if __name__ == "__main__":
    t0 = time.monotonic()
    res = run(sys.argv[1:] or None)
    print(table(res))
    bad = failures(res)
    print(f"{sum(r.status == 'killed' for r in res)}/{len(res)} killed in {time.monotonic() - t0:.0f} s")
    if bad:
        print("\n".join(bad))
    sys.exit(1 if bad else 0)
