#!/usr/bin/env python3
"""Issue 26, first slice: move the torch-free modules into dymu_rt/core and rewrite every
reference. Idempotent: run it on a tree that is half-moved (e.g. after merging branches
that still import the old paths) and it finishes the job.

usage: python core_move.py REPO_ROOT
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# old module (dotted, under dymu_rt) -> new module name under dymu_rt.core
MOVES = {
    "errors": "errors",
    "utils.io": "io",
    "utils.images": "images",
    "utils.limits": "limits",
    "utils.safetensors_np": "safetensors_np",
    "utils.threads": "threads",
    "utils.units": "units",
    "utils.heap": "heap",
    "control.preference": "preference",
    "control.selector": "selector",
    "models.tree": "tree",
    "models.fold": "bn_fold",
    "tasks.kinds": "kinds",
    "tasks.overview": "overview",
    "tasks.labels": "labels",
    "tasks.render": "render",
    "tasks.legends": "legends",
    "tasks.colormaps": "colormaps",
    "serve.triton.routing": "routing",
}
# old module -> new module (both under dymu_rt), outside the core: use cases in one place,
# one meaning per module name
RENAMES = {
    "demo": "app.demo",
    "check": "app.check",
    "compare": "app.compare",
    "runtime.images": "app.run_images",
    "compile.describe": "app.inspect",
    "evaluate.compare": "evaluate.comparison",
    "serve.triton.check": "serve.triton.repository_check",
    "compile.fold": "compile.fold_modules",
    "compile.writer": "compile.bundle_writer",
    "data.writer": "data.dataset_writer",
}


def all_moves() -> dict[str, str]:
    out = {old: f"core.{new}" for old, new in MOVES.items()}
    out.update(RENAMES)
    return out

TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".pbtxt", ".json"}
SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules", ".mutmut-cache"}
SKIP_TOP = {"site", "runs", "mutants"}
# generated artifacts whose bytes must not change (bundle JSON etc.)
SKIP_FILES_UNDER = ("dymu_rt/assets/", "benchmarks/results/")


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True)


def move_top_folders(root: Path) -> None:
    """cli/, profiles/, calibration/ live inside dymu_rt/ (files a merge left at the top move in)."""
    for top in ("cli", "profiles", "calibration"):
        base = root / top
        if not base.is_dir():
            continue
        for f in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            dst = root / "dymu_rt" / top / f.relative_to(base)
            if dst.exists():
                sys.exit(f"both {f} and {dst} exist: merge them by hand")
            dst.parent.mkdir(parents=True, exist_ok=True)
            git(root, "mv", str(f), str(dst))


def move_files(root: Path) -> None:
    move_top_folders(root)
    core = root / "dymu_rt" / "core"
    core.mkdir(exist_ok=True)
    (root / "dymu_rt" / "app").mkdir(exist_ok=True)
    for old, new in all_moves().items():
        src = root / "dymu_rt" / (old.replace(".", "/") + ".py")
        dst = root / "dymu_rt" / (new.replace(".", "/") + ".py")
        if src.exists():
            if dst.exists():
                sys.exit(f"both {src} and {dst} exist: merge them by hand")
            git(root, "mv", str(src), str(dst))


def rewrite_text(text: str) -> str:
    # longest first so that "utils.io" is not caught by a shorter name
    for old, new in sorted(all_moves().items(), key=lambda kv: -len(kv[0])):
        dotted_old = "dymu_rt." + old
        text = re.sub(r"(?<![\w.])" + re.escape(dotted_old) + r"(?![\w])", "dymu_rt." + new, text)
        path_old = "dymu_rt/" + old.replace(".", "/") + ".py"
        text = re.sub(r"(?<![\w/.])" + re.escape(path_old), "dymu_rt/" + new.replace(".", "/") + ".py", text)
        # "from dymu_rt.utils import units" / "from dymu_rt.models import fold as F"
        pkg, _, mod = ("dymu_rt." + old).rpartition(".")
        npkg, _, nmod = ("dymu_rt." + new).rpartition(".")
        text = re.sub(
            r"^(\s*)from " + re.escape(pkg) + r" import " + re.escape(mod) + r"\b(?!\s*,)(\s+as\s+\w+)?",
            lambda m: f"{m.group(1)}from {npkg} import {nmod}" + (m.group(2) or ("" if nmod == mod else f" as {mod}")),
            text, flags=re.MULTILINE)
    return text


def relative_imports_in_core(root: Path) -> None:
    """Core modules import each other relatively, so the Triton export can copy them verbatim
    under another package name."""
    for f in sorted((root / "dymu_rt" / "core").glob("*.py")):
        t = f.read_text()
        n = re.sub(r"^(\s*)from dymu_rt\.core\.(\w+) import ", r"\1from .\2 import ", t, flags=re.MULTILINE)
        n = re.sub(r"^(\s*)from dymu_rt\.core import ", r"\1from . import ", n, flags=re.MULTILINE)
        if n != t:
            f.write_text(n)


def main() -> None:
    root = Path(sys.argv[1]).resolve()
    move_files(root)
    changed = 0
    for f in root.rglob("*"):
        if f.resolve() == Path(__file__).resolve():
            continue
        if not f.is_file() or f.suffix not in TEXT_SUFFIXES and f.name not in {".importlinter", "README.md"}:
            continue
        rel = f.relative_to(root).as_posix()
        parts = f.relative_to(root).parts
        if any(part in SKIP_DIRS for part in parts) or parts[0] in SKIP_TOP or rel.startswith(SKIP_FILES_UNDER):
            continue
        t = f.read_text(encoding="utf-8", errors="surrogateescape")
        n = rewrite_text(t)
        if n != t:
            f.write_text(n, encoding="utf-8", errors="surrogateescape")
            changed += 1
    relative_imports_in_core(root)
    print(f"rewrote {changed} files")


if __name__ == "__main__":
    main()
