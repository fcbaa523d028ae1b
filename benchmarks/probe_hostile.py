"""Probe dymu-rt as a hostile and as a careless user would; print the issue-16 table.

    python benchmarks/probe_hostile.py [--out probe-out] [--jobs 2] [--only WORD] [--no-strace]

Builds a corpus (``tests/security/corpus.py``): image bombs, bad arguments, broken run
configs, grid explosions, ~47 hostile or broken bundles (each exercised by ``run``,
``inspect --verify`` and ``profile``; the traversal ones by ``calibrate`` too), a build into a
folder that is not a bundle, and concurrent ``run`` processes on one bundle. Each case runs
``dymu-rt`` in a fresh process (``tests/security/audited.py``: an audit hook on every open,
remove and rename) and, where ``strace`` exists, under ``strace -f`` as well, which also
sees files opened by C++ libraries (ONNX Runtime's external data). Image cases run under a
1 GiB address-space limit (``RLIMIT_AS``).

A case counts as
* a one-line error: non-zero exit and stderr is exactly one ``error: ...`` line;
* a traceback: stderr holds ``Traceback``; a hang: no exit within ``--timeout`` s;
* an accepted hostile input: exit 0 where the case must be refused;
* a read outside: any open of a file the case placed outside the bundle (or /etc/passwd),
  seen by the audit hook, by strace, or by the file's access time moving;
* a write outside: any create/write/remove/rename outside the bundle, the case's output
  folder and its scratch folder;
* files lost: a file the user had (not written by dymu-rt) changed or gone afterwards.

Writes ``OUT/probe.json`` (every case) and ``OUT/probe.md`` (the table).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "security"))
sys.path.insert(0, str(ROOT / "tests" / "compile"))

import corpus  # noqa: E402
import corpus_artifacts  # noqa: E402
from corpus import Case  # noqa: E402

GIB = 2**30
AUDITED = ROOT / "tests" / "security" / "audited.py"
STRACE = shutil.which("strace")
WRITE_CALLS = {"unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
               "symlink", "symlinkat", "creat", "truncate", "link", "linkat"}
_CALL = re.compile(r"^\d+\s+(\w+)\((.*)$")
_PATH = re.compile(r'(?:(?:(\d+)<([^>]*)>|AT_FDCWD),\s*)?"((?:[^"\\]|\\.)*)"')


def _strace_paths(trace: Path, cwd: Path):
    """(path, is_write, succeeded) for every file syscall in an ``strace -f -y`` log."""
    if not trace.is_file():
        return
    for line in trace.read_text(errors="replace").splitlines():
        m = _CALL.match(line)
        if not m:
            continue
        call, rest = m.groups()
        ok = not re.search(r"=\s+-1\s", rest)
        write = call in WRITE_CALLS or (call in ("open", "openat") and re.search(r"O_WRONLY|O_RDWR|O_CREAT", rest))
        found = _PATH.findall(rest.split(") =")[0] if ") =" in rest else rest)
        if call in ("symlink", "symlinkat"):
            found = found[1:]            # the first string is the link's content, not a file touched
        for dirpath, dirfd_path, p in found:
            p = p.encode().decode("unicode_escape", errors="replace")
            base = dirfd_path if dirfd_path else str(cwd)
            full = os.path.normpath(p if p.startswith("/") else os.path.join(base, p))
            yield full, bool(write), ok


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _staging(path: str, roots) -> bool:
    """A writer's own staging beside an allowed folder R (``.R.build-PID``, ``.R.tmp-PID``,
    ``.R.old-PID``, ``.R.lock.d``): the atomic replace the issue asks for writes there."""
    for r in roots:
        r = os.path.realpath(r).rstrip("/")
        parent, name = os.path.dirname(r), os.path.basename(r)
        if path.startswith(f"{parent}/.{name}."):
            return True
    return False


def run_case(case: Case, work: Path, timeout: float, use_strace: bool) -> dict:
    cdir = Path(tempfile.mkdtemp(prefix="case.", dir=work))
    report = cdir / "report.json"
    trace = cdir / "strace.txt"
    allow = [str(cdir)] + [p for p in (case.bundle, case.out) if p]
    cmd = [sys.executable, str(AUDITED), str(report)]
    for w in case.watch:
        cmd += ["--watch", w]
    for a in allow:
        cmd += ["--allow-write", a]
    if case.memory_limit:
        cmd += ["--limit-as", str(GIB)]
    cmd += ["--", *case.argv]
    if use_strace and STRACE:
        cmd = [STRACE, "-f", "-qq", "-y", "-s", "4096", "-o", str(trace), "-e",
               "trace=open,openat,creat,unlink,unlinkat,rename,renameat,renameat2,mkdir,mkdirat,rmdir,"
               "symlink,symlinkat,truncate,link,linkat", *cmd]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "MPLCONFIGDIR": str(cdir / "mpl"), "TMPDIR": str(cdir), "COLUMNS": "200", "HOME": str(cdir),
           }
    # Files under watched folders get an access time of 1: any read by anyone (C++ libraries
    # included, which raise no audit event) moves it (relatime updates atime older than mtime).
    sentinels = [Path(dp) / f for w in case.watch if os.path.isdir(w) for dp, _, fs in os.walk(w) for f in fs]
    sentinels = [f for f in sentinels if f.is_file() and not f.is_symlink()]
    for f in sentinels:
        os.utime(f, (1, f.stat().st_mtime))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=cdir, env=env, capture_output=True, text=True, timeout=timeout)
        code, err, hang = p.returncode, p.stderr, False
    except subprocess.TimeoutExpired as e:
        code, err, hang = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""), True
    seconds = time.perf_counter() - t0
    rep = json.loads(report.read_text()) if report.is_file() else {}
    err_lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(case.stderr_ok or ("\0",))]
    traceback = "Traceback" in err
    one_line = (code not in (0, None) and not traceback and len(err_lines) == 1
                and err_lines[0].startswith("error: "))
    touched = set(rep.get("touched", []))
    touched |= {str(f) for f in sentinels if f.exists() and f.stat().st_atime != 1}
    writes = set(rep.get("writes_outside", []))
    for path, write, ok in _strace_paths(trace, cdir):
        if ok and _under(path, case.watch):
            touched.add(path)
        if write and not _under(path, allow + ["/dev", "/proc"]) and not _staging(path, allow):
            writes.add(path)
    writes = {w for w in writes if not _staging(w, allow)}
    lost = []
    if case.check_intact:
        base = Path(case.check_intact["folder"])
        now = corpus.snapshot(base) if base.is_dir() else {}
        lost = [k for k, v in case.check_intact["files"].items() if now.get(k) != v]
    lost += [f"{p} is no longer a link" for p in case.links if not os.path.islink(p)]
    if case.expect == "error":
        accepted = code == 0
    else:
        accepted = False
    # tampering laundered (a checksum re-created over an edit) or a half-made artifact left
    leftover = [p for p in case.absent if os.path.lexists(p)]
    accepted = accepted or bool(leftover)
    ok_outcome = (case.expect == "error" and one_line) or (case.expect == "ok" and code == 0) or (
        case.expect == "any" and (code == 0 or one_line))
    shutil.rmtree(cdir / "mpl", ignore_errors=True)
    return {"name": case.name, "category": case.category, "expect": case.expect, "code": code,
            "seconds": round(seconds, 2), "one_line_error": one_line, "traceback": traceback, "hang": hang,
            "accepted_hostile": accepted, "reads_outside": sorted(touched), "writes_outside": sorted(writes),
            "files_lost": lost, "peak_rss_bytes": rep.get("peak_rss_bytes"), "passed": bool(
                ok_outcome and not traceback and not hang and not touched and not writes and not lost
                and not accepted),
            "stderr_tail": "\n".join(err_lines[-3:])[-600:]}


# -- the corpus --------------------------------------------------------------------------------

def image_cases(work: Path, bundle: Path) -> list[Case]:
    imgs = corpus.image_bombs(work / "images")
    cases = []
    for name, path in imgs.items():
        expect = "any" if name.startswith(("tall", "wide")) else "error"
        out = work / f"img.{name}.out"
        cases.append(Case(f"image/{name}", "image", ["run", str(path), "--r", corpus.IMAGE_CASE_R, "--c", "0.5",
                                                     "--bundle", str(bundle), "--out", str(out)],
                          expect=expect, bundle=str(bundle), out=str(out), memory_limit=True))
    return cases


def argument_cases(work: Path, bundle: Path, good_image: Path, run_dir: Path) -> list[Case]:
    fifo = work / "fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    empty_dir = work / "no_images"
    empty_dir.mkdir(exist_ok=True)
    out = work / "args.out"
    base = ["--bundle", str(bundle), "--out", str(out)]

    def run(*a):
        return ["run", *a, *base]

    def c(name, argv, expect="error"):
        return Case(f"args/{name}", "arguments", argv, expect=expect, bundle=str(bundle), out=str(out),
                    watch=[str(work / "outside")])

    cases = [
        c("r_overflow", run(str(good_image), "--r", "1e308,1e308,0", "--c", "0.5")),
        c("r_overflow_normalize", run(str(good_image), "--r", "1e308,1e308,0", "--c", "0.5", "--normalize"),
          expect="ok"),
        c("r_huge_fraction", run(str(good_image), "--r", "1" + "0" * 400 + "/3,0,0", "--c", "0.5")),
        c("r_nan", run(str(good_image), "--r", "nan,0.5,0.5", "--c", "0.5")),
        c("r_inf", run(str(good_image), "--r", "inf,0,0", "--c", "0.5")),
        c("c_1e400", run(str(good_image), "--r", "1,0,0", "--c", "1e400")),
        c("c_huge_fraction", run(str(good_image), "--r", "1,0,0", "--c", "1" + "0" * 400 + "/7")),
        c("empty_image_arg", run("", "--r", "1,0,0", "--c", "0.5")),
        c("fifo_image", run(str(fifo), "--r", "1,0,0", "--c", "0.5")),
        c("dev_zero_image", run("/dev/zero", "--r", "1,0,0", "--c", "0.5")),
        c("folder_without_images", run(str(empty_dir), "--r", "1,0,0", "--c", "0.5")),
        c("missing_image", run(str(work / "nope.png"), "--r", "1,0,0", "--c", "0.5")),
        c("profile_batch_1e6", ["profile", "--bundle", str(bundle), "--batch", "1000000", "--iters", "1"]),
        c("profile_batch_0", ["profile", "--bundle", str(bundle), "--batch", "0"]),
        c("profile_iters_negative", ["profile", "--bundle", str(bundle), "--iters", "-5"]),
        c("build_grid_1e-6", ["build", str(run_dir), "--grid", "1e-6", "--out", str(work / "grid.b1")]),
        c("build_grid_0.001", ["build", str(run_dir), "--grid", "0.001", "--out", str(work / "grid.b2")]),
        c("build_c_grid_1e-9", ["build", str(run_dir), "--grid", "0.5", "--c-grid", "1e-9",
                                "--out", str(work / "grid.b3")]),
        c("eval_grid_1e-6", ["eval", str(run_dir), "--grid", "1e-6"]),
        c("build_grid_0.3", ["build", str(run_dir), "--grid", "0.3", "--out", str(work / "grid.b4")]),
    ]
    return cases


def run_config_cases(work: Path, run_dir: Path) -> list[Case]:
    cases = []
    variants = {"stages_string": "x", "stages_list": [], "stage_number": {"anchor": 1, "edge": {}, "weight": {}},
                "done_string": {"anchor": {"done": "yes"}, "edge": {"done": True}, "weight": {"done": True}}}
    for name, stages in variants.items():
        d = work / f"run.{name}"
        shutil.copytree(run_dir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["stages"] = stages
        (d / "config.json").write_text(json.dumps(cfg))
        for cmd in ("build", "inspect", "eval"):
            argv = {"build": ["build", str(d), "--grid", "0.5", "--out", str(d) + ".bundle"],
                    "inspect": ["inspect", str(d)], "eval": ["eval", str(d), "--grid", "0.5", "--n-val", "2"]}[cmd]
            cases.append(Case(f"runcfg/{name}/{cmd}", "run-config", argv, bundle=str(d), out=str(d) + ".bundle"))
    d = work / "run.deep"
    shutil.copytree(run_dir, d)
    (d / "config.json").write_text('{"preset": ' + "[" * 200_000 + "]" * 200_000 + ', "stages": {}}')
    cases.append(Case("runcfg/deep_nesting/inspect", "run-config", ["inspect", str(d)], bundle=str(d)))
    return cases


def build_out_cases(work: Path, run_dir: Path, good: Path) -> list[Case]:
    """``build --out`` into folders holding a user's files: refused, or nothing of theirs lost."""
    cases = []

    def user_folder(name: str, with_manifest: str | None) -> Path:
        d = work / f"userdir.{name}"
        (d / "graphs").mkdir(parents=True)
        (d / "engines" / "mine").mkdir(parents=True)
        (d / "thesis.tex").write_text("\\documentclass{article} years of work\n")
        (d / "graphs" / "plot.png").write_bytes(b"\x89PNG fake")
        (d / "engines" / "mine" / "model.onnx").write_bytes(b"my own model")
        (d / "notes.tmp").write_text("scratch\n")
        (d / "sub").mkdir()
        (d / "sub" / "draft.tmp").write_text("draft\n")
        if with_manifest is not None:
            (d / "manifest.json").write_text(with_manifest)
        return d

    for name, manifest in (("manifest_garbage", "not json"), ("manifest_empty_object", "{}"),
                           ("manifest_other_tool", json.dumps({"name": "my-webapp", "version": "1.0"})),
                           ("manifest_claims_bundle", json.dumps({"kind": "dymu-rt-bundle", "schema_version": 2})),
                           ("no_manifest", None)):
        d = user_folder(name, manifest)
        cases.append(Case(f"build-out/{name}", "data-loss", ["build", str(run_dir), "--grid", "0.5", "--out", str(d)],
                          bundle=str(d), out=str(d), check_intact={"folder": str(d), "files": corpus.snapshot(d)}))
    # A real bundle with a user's files added: a rebuild may replace the bundle's own files only.
    d = work / "userdir.bundle_plus_files"
    shutil.copytree(good, d)
    (d / "notes.txt").write_text("my notes\n")
    (d / "graphs" / "extra.tmp").write_text("mine\n")
    snap = {k: v for k, v in corpus.snapshot(d).items() if k in ("notes.txt", "graphs/extra.tmp")}
    cases.append(Case("build-out/bundle_plus_user_files", "data-loss",
                      ["build", str(run_dir), "--grid", "0.5", "--out", str(d)], expect="any",
                      bundle=str(d), out=str(d), check_intact={"folder": str(d), "files": snap}))
    return cases


def concurrent_runs(work: Path, good: Path, image: Path, n: int = 8, timeout: float = 300) -> dict:
    """``n`` ``run`` processes at different preferences on one writable bundle: every engine
    file written must be recorded in the manifest afterwards."""
    b = work / "concurrent.bundle"
    shutil.copytree(good, b)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
           "MPLCONFIGDIR": str(work / "mpl")}
    prefs = [("1,0,0", "0"), ("0,1,0", "0"), ("0,0,1", "0"), ("1,0,0", "1"), ("0,1,0", "1"), ("0,0,1", "1"),
             ("0.5,0.5,0", "0.5"), ("0.4,0.3,0.3", "0.25")][:n]
    procs = [subprocess.Popen([sys.executable, "-m", "dymu_rt.cli.main", "run", str(image), "--r", r, "--c", c,
                               "--bundle", str(b), "--out", str(work / f"conc.out{i}")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i, (r, c) in enumerate(prefs)]
    errs = [p.communicate(timeout=timeout)[1] for p in procs]
    m = json.loads((b / "manifest.json").read_text())
    rec = {}
    for backend in (m.get("engines") or {}).values():
        for prof in backend.values():
            rec.update(prof.get("files", {}))
    written = sorted(p.name for p in (b / "engines").rglob("*") if p.is_file() and not p.name.startswith("."))
    return {"processes": n, "exit_codes": [p.returncode for p in procs], "engine_files": len(written),
            "engines_recorded": len(rec), "tracebacks": sum("Traceback" in e for e in errs)}


def issue27_cases(work: Path, good: Path, image: Path, run_dir: Path) -> list[Case]:
    """Issue 27's classes (tests/security/corpus_artifacts.py)."""
    w = work / "i27"
    w.mkdir(exist_ok=True)
    static_run = corpus_artifacts.make_adashare_run(w / "adashare.run")
    static_bundle = w / "static.bundle"
    subprocess.run([sys.executable, "-m", "dymu_rt.cli.main", "build", str(static_run), "--out", str(static_bundle)],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return (corpus_artifacts.unverified_cases(good, w, image) + corpus_artifacts.graph_content_cases(good, w, image)
            + corpus_artifacts.run_folder_cases(run_dir, w) + corpus_artifacts.profile_cases(good, w, image)
            + corpus_artifacts.thread_cases(good, w, run_dir) + corpus_artifacts.batch_cases(w)
            + corpus_artifacts.calibration_image_cases(good, w)
            + corpus_artifacts.triton_repo_cases(good, w, static_bundle))


def multi_process_checks(work: Path, good: Path, run_dir: Path):
    """(name, thunk) of the checks that need several processes: concurrent exports, kill -9."""
    w = work / "i27mp"
    w.mkdir(exist_ok=True)
    yield "concurrent-export/x2", lambda: corpus_artifacts.concurrent_exports(good, w)
    for kind, delay in (("build", 2.5), ("export", 2.0), ("calibrate", 2.5), ("train", 8.0)):
        yield f"kill-9/{kind}", (lambda k=kind, d=delay: corpus_artifacts.kill_during(k, w, good, run_dir, d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("probe-out"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--only", default=None, help="Run only cases whose name contains this.")
    ap.add_argument("--skip", default=None, help="Skip cases whose name contains this.")
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    ap.add_argument("--skip-new", action="store_true", help="Leave out issue 27's classes (runs, profiles, graph "
                    "content, calibration images, Triton repositories, concurrent exports, kill -9).")
    args = ap.parse_args()
    from rich.progress import Progress

    from run_fixture import make_tiny_run

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probe.partial.jsonl").write_text("")        # this run's cases, one JSON line each
    work = Path(tempfile.mkdtemp(prefix="dymu-probe."))
    good = work / "good.bundle"
    shutil.copytree(ROOT / "dymu_rt" / "assets" / "default_bundle", good)
    from PIL import Image

    image = work / "good.png"
    Image.new("RGB", (64, 64), (120, 80, 40)).save(image)
    run_dir = make_tiny_run(work / "tiny.run")
    cases = (image_cases(work, good) + argument_cases(work, good, image, run_dir) + run_config_cases(work, run_dir)
             + build_out_cases(work, run_dir, good)
             + corpus.bundle_cases(good, work / "hostile", image, ("run", "inspect", "profile")))
    trav = [n for n in corpus.MUTATION_NAMES if "traversal" in n or "absolute" in n or "symlink" in n]
    for n in trav:
        dest = work / "hostile" / f"{n}.calibrate"
        cat, root = corpus.hostile_bundle(good, dest, work / "hostile" / "outside", n)
        cases.append(Case(f"bundle/{n}/calibrate", cat, ["calibrate", str(root), "--synth", "2"],
                          watch=[str(work / "hostile" / "outside"), "/etc/passwd"], bundle=str(root)))
    if not args.skip_new:
        cases += issue27_cases(work, good, image, run_dir)
    for c in cases:
        if c.name.startswith("bundle/"):
            c.watch = list(dict.fromkeys(c.watch + ["/tmp/dymu-outside-x"]))
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    if args.skip:
        cases = [c for c in cases if args.skip not in c.name]
    results = []
    with Progress() as bar, cf.ThreadPoolExecutor(args.jobs) as pool:
        task = bar.add_task("probing", total=len(cases))
        futs = {pool.submit(run_case, c, work, args.timeout, not args.no_strace): c for c in cases}
        for fut in cf.as_completed(futs):
            results.append(fut.result())
            bar.update(task, advance=1, description=f"probing {futs[fut].name[:40]}")
            with open(args.out / "probe.partial.jsonl", "a") as f:      # survives a killed probe
                f.write(json.dumps(results[-1]) + "\n")
    if not args.skip_new:
        for name, fn in multi_process_checks(work, good, run_dir):
            if (args.only and args.only not in name) or (args.skip and args.skip in name):
                continue
            t0 = time.perf_counter()
            try:
                res = fn()
            except Exception as e:  # noqa: BLE001 - a crashed check is a failing case, not a crashed probe
                res = corpus_artifacts._result(name, name.split("/")[0], False, 1, [repr(e)[:300]])
            res["seconds"] = round(time.perf_counter() - t0, 2)
            results.append(res)
            with open(args.out / "probe.partial.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
    results.sort(key=lambda r: r["name"])
    conc = (concurrent_runs(work, good, image) if (not args.only or "concurrent" in args.only)
            and (not args.skip or "concurrent" not in args.skip) else None)
    image_rss = [r["peak_rss_bytes"] or 0 for r in results if r["category"] == "image"]
    worst = max(((r["peak_rss_bytes"] or 0, r["name"]) for r in results if r["category"] == "image"), default=(0, "-"))
    table = {
        "cases tried": len(results) + (1 if conc else 0),
        "one-line errors": sum(r["one_line_error"] for r in results),
        "tracebacks": sum(r["traceback"] for r in results) + (conc["tracebacks"] if conc else 0),
        "hangs": sum(r["hang"] for r in results),
        "accepted hostile bundles": sum(r["accepted_hostile"] for r in results if r["name"].startswith("bundle/")),
        "accepted other hostile inputs": sum(r["accepted_hostile"] for r in results
                                             if not r["name"].startswith("bundle/")),
        "reads outside": sum(bool(r["reads_outside"]) for r in results),
        "writes outside": sum(bool(r["writes_outside"]) for r in results),
        "files lost": sum(len(r["files_lost"]) for r in results),
        "engine records lost (concurrent run)": (conc["engine_files"] - conc["engines_recorded"]) if conc else None,
        "peak memory of the worst image case": f"{worst[0] / 2**20:.0f} MiB ({worst[1]})" if image_rss else "-",
        "cases failing any check": sum(not r["passed"] for r in results),
    }
    (args.out / "probe.json").write_text(json.dumps({"table": table, "concurrent": conc, "cases": results,
                                                     "strace": bool(STRACE and not args.no_strace)}, indent=2))
    lines = ["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in table.items()]
    cats = sorted({r["category"] for r in results})
    lines += ["", "| class | cases | passed | one-line errors | tracebacks | hangs | accepted tampering | "
              "reads outside | writes outside | files lost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cats:
        rs = [r for r in results if r["category"] == c]
        lines.append(f"| {c} | {len(rs)} | {sum(r['passed'] for r in rs)} | {sum(r['one_line_error'] for r in rs)} | "
                     f"{sum(r['traceback'] for r in rs)} | {sum(r['hang'] for r in rs)} | "
                     f"{sum(r['accepted_hostile'] for r in rs)} | {sum(bool(r['reads_outside']) for r in rs)} | "
                     f"{sum(bool(r['writes_outside']) for r in rs)} | {sum(len(r['files_lost']) for r in rs)} |")
    failing = [r for r in results if not r["passed"]]
    if failing:
        lines += ["", "failing cases:"] + [f"* {r['name']}: code {r['code']}, {r['stderr_tail'][-200:]!r}, "
                                           f"reads {r['reads_outside'][:2]}, writes {r['writes_outside'][:2]}, "
                                           f"lost {r['files_lost'][:3]}" for r in failing]
    (args.out / "probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if conc:
        print(f"concurrent run: {conc}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"scratch kept in {work}")


if __name__ == "__main__":
    main()
