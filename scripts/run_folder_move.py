#!/usr/bin/env python3
"""Issue 26, second slice: the run folder becomes its own package (``dymu_rt/run``, beside
``dymu_rt/bundle``), and the train wing's package ``dymu_rt.train`` becomes
``dymu_rt.training`` so that ``from dymu_rt import train`` can be the public function.

What it does, in this order (every step is a no-op on a tree where it is already done, so
run it again after merging a branch that still uses the old paths; it stops with a message
when a file exists at both the old and the new place, which only a person can merge):

1. ``git mv dymu_rt/train/* dymu_rt/training/``;
2. whole-module moves: ``training/checkpoint.py`` -> ``run/layout.py`` (RunDir and the
   safetensors I/O of a run's modules and training state), ``training/run_schema.py`` ->
   ``run/schema.py`` (the trust boundary of ``config.json``);
3. symbol moves: ``from dymu_rt.training.static_run import method_of, ...`` (and the same names
   re-exported by ``training.static``) are split so that the run-format names
   (``method_of``, ``DEFAULT_METHOD``, ``STATIC_STAGES``, ``ARCHITECTURE``, ``MODEL``) come from
   ``dymu_rt.run.layout``
   and the stage log ``JsonlLog`` (``training.common``) from ``dymu_rt.run.logs``; the same in a
   PEP 562 table of name -> module strings (``"method_of": "dymu_rt.train.static"``);
4. every reference to an old module, dotted (``dymu_rt.train.pipeline``) or as a path
   (``dymu_rt/train/pipeline.py``, bare ``train/pipeline.py`` for a module that exists), in
   dymu_rt/, tests/, benchmarks/, scripts/, docs/, README.md, mkdocs.yml, .importlinter,
   pyproject.toml.

The hand edits that go with it (commit "run: ..." after the script's output) define the moved
names in their new homes; the script alone leaves a tree that imports them from there.

usage: python scripts/run_folder_move.py REPO_ROOT
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE_OLD, PACKAGE_NEW = "train", "training"
# old module -> new module (dotted, under dymu_rt); the package rename is applied after these
MODULE_MOVES = {
    "train.checkpoint": "run.layout",
    "training.checkpoint": "run.layout",
    "train.run_schema": "run.schema",
    "training.run_schema": "run.schema",
}
# (module, name) -> module the name lives in now (dotted, under dymu_rt; after the package rename)
RUN_NAMES = ("method_of", "DEFAULT_METHOD", "STATIC_STAGES", "ARCHITECTURE", "MODEL")
SYMBOL_MOVES = {("training.static_run", n): "run.layout" for n in RUN_NAMES}
SYMBOL_MOVES.update({("training.static", "method_of"): "run.layout",
                     ("training.common", "JsonlLog"): "run.logs"})

TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".pbtxt", ".json"}
SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules", ".mutmut-cache"}
SKIP_TOP = {"site", "runs", "mutants", "dymu_rt.egg-info"}
# generated artifacts whose bytes must not change (bundle JSON etc.)
SKIP_FILES_UNDER = ("dymu_rt/assets/", "benchmarks/results/")
# the move scripts and the test of this one name the old paths on purpose
SKIP_FILES = {"scripts/run_folder_move.py", "scripts/floor_plan_move.py", "tests/test_run_folder_move.py"}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True)


def _mv(root: Path, src: Path, dst: Path) -> None:
    if dst.exists():
        sys.exit(f"both {src.relative_to(root)} and {dst.relative_to(root)} exist: merge them by hand")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "--error-unmatch", str(src)],
                             capture_output=True).returncode == 0
    if tracked:
        git(root, "mv", str(src), str(dst))
    else:
        src.rename(dst)


def move_files(root: Path) -> None:
    pkg = root / "dymu_rt"
    old = pkg / PACKAGE_OLD
    if old.is_dir():
        for f in sorted(p for p in old.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            _mv(root, f, pkg / PACKAGE_NEW / f.relative_to(old))
        for d in sorted((p for p in old.rglob("*") if p.is_dir()), reverse=True):
            if not any(p for p in d.iterdir() if p.name != "__pycache__"):
                subprocess.run(["rm", "-rf", str(d)], check=True)
        if old.is_dir() and not any(p for p in old.iterdir() if p.name != "__pycache__"):
            subprocess.run(["rm", "-rf", str(old)], check=True)
    for src_mod, dst_mod in MODULE_MOVES.items():
        src = pkg / (src_mod.replace(".", "/") + ".py")
        if src.exists():
            _mv(root, src, pkg / (dst_mod.replace(".", "/") + ".py"))


def add_run_package(root: Path) -> None:
    """pyproject's explicit package list names dymu_rt.run (after dymu_rt.training)."""
    f = root / "pyproject.toml"
    t = f.read_text()
    if '"dymu_rt.run"' not in t and '"dymu_rt.training",' in t:
        f.write_text(t.replace('"dymu_rt.training",', '"dymu_rt.training", "dymu_rt.run",', 1))


def all_module_moves() -> dict[str, str]:
    """old dotted module (under dymu_rt) -> new, the package rename last (longest first)."""
    return {**MODULE_MOVES, PACKAGE_OLD: PACKAGE_NEW}


def _rename_package(text: str) -> str:
    """``dymu_rt.train`` -> ``dymu_rt.training`` where it names the package: before a submodule
    (``dymu_rt.train.pipeline``), in an import statement, as an entry of a package list
    (.importlinter, pyproject). A bare ``dymu_rt.train`` elsewhere is the public function."""
    old, new = "dymu_rt." + PACKAGE_OLD, "dymu_rt." + PACKAGE_NEW
    text = re.sub(r"(?<![\w.])" + re.escape(old) + r"(?=\.\w)", new, text)
    text = re.sub(r"^(\s*from\s+)" + re.escape(old) + r"(\s+import\s)", r"\g<1>" + new + r"\g<2>", text,
                  flags=re.MULTILINE)
    text = re.sub(r"^(\s*import\s+)" + re.escape(old) + r"(?![\w.])", r"\g<1>" + new, text, flags=re.MULTILINE)
    text = re.sub(r"^(\s*)" + re.escape(old) + r"(\s*)$", r"\g<1>" + new + r"\g<2>", text, flags=re.MULTILINE)
    # an entry of a quoted list (pyproject's packages): "dymu_rt.train", ...
    return re.sub(r"([\"'])" + re.escape(old) + r"\1(?=\s*[,\]])", r"\g<1>" + new + r"\g<1>", text)


def _rewrite_modules(text: str, root: Path) -> str:
    for old, new in sorted(all_module_moves().items(), key=lambda kv: -len(kv[0])):
        dotted_old = "dymu_rt." + old
        if old == PACKAGE_OLD:
            text = _rename_package(text)
        else:
            text = re.sub(r"(?<![\w.])" + re.escape(dotted_old) + r"(?![\w])", "dymu_rt." + new, text)
        # "from dymu_rt.train import checkpoint" -> "from dymu_rt.run import layout as checkpoint"
        pkg, _, mod = dotted_old.rpartition(".")
        npkg, _, nmod = ("dymu_rt." + new).rpartition(".")
        if "." in old:
            text = re.sub(
                r"^(\s*)from " + re.escape(pkg) + r" import " + re.escape(mod) + r"\b(?!\s*,)(\s+as\s+\w+)?",
                lambda m: f"{m.group(1)}from {npkg} import {nmod}" + (m.group(2) or ("" if nmod == mod
                                                                                    else f" as {mod}")),
                text, flags=re.MULTILINE)
        # paths: dymu_rt/train/checkpoint.py, dymu_rt/train/ (the folder)
        old_path, new_path = old.replace(".", "/"), new.replace(".", "/")
        if "." in old:
            text = re.sub(r"(?<![\w/.])(dymu_rt/)?" + re.escape(old_path + ".py"),
                          lambda m: (m.group(1) or "") + new_path + ".py", text)
        else:
            text = re.sub(r"(?<![\w/.])dymu_rt/" + re.escape(old_path) + r"(?![\w])",
                          "dymu_rt/" + new_path, text)
    # bare "train/pipeline.py" for a module of the (renamed) package
    mods = {p.stem for p in (root / "dymu_rt" / PACKAGE_NEW).glob("*.py")}
    text = re.sub(r"(?<![\w/.-])" + PACKAGE_OLD + r"/(\w+)\.py",
                  lambda m: f"{PACKAGE_NEW}/{m.group(1)}.py" if m.group(1) in mods else m.group(0), text)
    return text


_FROM_IMPORT = re.compile(r"^([ \t]*)from[ \t]+(dymu_rt(?:\.\w+)+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)",
                          re.MULTILINE)


def _format_import(indent: str, module: str, names: list[str]) -> str:
    line = f"{indent}from {module} import {', '.join(names)}"
    if len(line) <= 120:
        return line
    head = f"{indent}from {module} import ("
    out, cur = [], head
    for i, n in enumerate(names):
        piece = n + (", " if i < len(names) - 1 else ")")
        if len(cur) + len(piece.rstrip()) > 120:
            out.append(cur.rstrip())
            cur = " " * len(head) + piece
        else:
            cur += piece
    out.append(cur)
    return "\n".join(out)


def _rewrite_symbols(text: str) -> str:
    def fix(m: re.Match) -> str:
        indent, module, body = m.group(1), m.group(2), m.group(3)
        short = module[len("dymu_rt."):]
        if not any(k[0] == short for k in SYMBOL_MOVES):
            return m.group(0)
        comment = ""
        if "#" in body and not body.startswith("("):
            body, comment = body[:body.index("#")].rstrip(), "  " + body[body.index("#"):]
        if "#" in body:
            print(f"warning: an import from {module} holds a comment; fix it by hand:\n{m.group(0)}",
                  file=sys.stderr)
            return m.group(0)
        names = [n.strip() for n in body.strip().strip("()").split(",") if n.strip()]
        keep, moved = [], {}
        for n in names:
            dest = SYMBOL_MOVES.get((short, n.split()[0]))
            if dest is None:
                keep.append(n)
            else:
                moved.setdefault("dymu_rt." + dest, []).append(n)
        if not moved:
            return m.group(0)
        lines = [_format_import(indent, module, keep) + comment] if keep else []
        lines += [_format_import(indent, mod, ns) + comment for mod, ns in moved.items()]
        return "\n".join(lines)

    return _merge_imports(_NAME_TABLE.sub(_fix_table_entry, _FROM_IMPORT.sub(fix, text)))


# an entry of a PEP 562 name -> module table: "method_of": "dymu_rt.training.static",
_NAME_TABLE = re.compile(r"""(["'])(\w+)\1(\s*:\s*)(["'])dymu_rt\.([\w.]+)\4""")


def _fix_table_entry(m: re.Match) -> str:
    dest = SYMBOL_MOVES.get((m.group(5), m.group(2)))
    if dest is None:
        return m.group(0)
    q, name, sep, q2 = m.group(1), m.group(2), m.group(3), m.group(4)
    return f"{q}{name}{q}{sep}{q2}dymu_rt.{dest}{q2}"


_SIMPLE_IMPORT = re.compile(r"^([ \t]*)from[ \t]+(dymu_rt(?:\.\w+)+)[ \t]+import[ \t]+([\w, ]+?)(  #.*)?$")


def _merge_imports(text: str) -> str:
    """Within one run of consecutive import lines, single-line imports from a destination of
    SYMBOL_MOVES at the same indentation (and with the same comment) become one line."""
    dests = {"dymu_rt." + d for d in SYMBOL_MOVES.values()}
    out: list[str] = []
    block: dict[tuple, int] = {}          # (indent, module, comment) -> index in out
    for line in text.split("\n"):
        if not re.match(r"[ \t]*(from|import)[ \t]", line):
            block = {}
        m = _SIMPLE_IMPORT.match(line)
        if m and m.group(2) in dests:
            key = (m.group(1), m.group(2), m.group(4) or "")
            if key in block:
                first = _SIMPLE_IMPORT.match(out[block[key]])
                names = [n.strip() for n in first.group(3).split(",")]
                names += [n.strip() for n in m.group(3).split(",") if n.strip() not in names]
                merged = f"{key[0]}from {key[1]} import {', '.join(sorted(names, key=_name_key))}{key[2]}"
                if len(merged) <= 120:
                    out[block[key]] = merged
                    continue
            else:
                block[key] = len(out)
        out.append(line)
    return "\n".join(out)


def _name_key(name: str) -> tuple:
    """isort's order inside one import: CONSTANTS, Classes, functions."""
    n = name.split()[0]
    return (0 if n.isupper() else 1 if n[:1].isupper() else 2, n.lower())


_PAREN_IMPORT = re.compile(r"^([ \t]*from[ \t]+dymu_rt\.(?:training|run)(?:\.\w+)*[ \t]+import[ \t]+\()([^)]*\))",
                           re.MULTILINE)


def _realign(text: str) -> str:
    """Continuation lines of a parenthesized import from a renamed module line up under its
    first name again (the package got three letters longer)."""
    def fix(m: re.Match) -> str:
        head, body = m.group(1), m.group(2)
        lines = body.split("\n")
        pad = " " * len(head)
        return head + "\n".join([lines[0]] + [pad + l.lstrip() if l.strip() else l for l in lines[1:]])

    return _PAREN_IMPORT.sub(fix, text)


def rewrite_text(text: str, root: Path) -> str:
    return _realign(_rewrite_symbols(_rewrite_modules(text, root)))


def text_files(root: Path):
    """The files the rewrite visits (sources, tests, benchmarks, scripts, docs, configs)."""
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix not in TEXT_SUFFIXES and f.name not in {".importlinter", "README.md"}:
            continue
        rel = f.relative_to(root).as_posix()
        parts = f.relative_to(root).parts
        if any(part in SKIP_DIRS for part in parts) or parts[0] in SKIP_TOP or \
                rel.startswith(SKIP_FILES_UNDER) or rel in SKIP_FILES:
            continue
        yield f


def run(root: Path) -> int:
    """Move and rewrite the tree at ``root``; the number of files rewritten."""
    move_files(root)
    changed = 0
    for f in text_files(root):
        t = f.read_text(encoding="utf-8", errors="surrogateescape")
        n = rewrite_text(t, root)
        if n != t:
            f.write_text(n, encoding="utf-8", errors="surrogateescape")
            changed += 1
    add_run_package(root)
    return changed


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("usage: ")[-1])
    print(f"rewrote {run(Path(sys.argv[1]).resolve())} files")


if __name__ == "__main__":
    main()
