"""Print dymu-rt's import graph between layers, its upward imports and its function-level imports.

    python scripts/import_graph.py                 # this checkout
    python scripts/import_graph.py --root /work/main --json

Reads the source with ``ast`` (nothing is imported, so it works on any checkout, torch or
not). A module's layer is its first package under ``dymu_rt`` (``dymu_rt/app/demo.py`` is the
``demo`` layer; an old checkout's top-level ``cli/`` is the ``cli`` layer). Layers are put in
one order consistent with the floor plan in ``.importlinter`` (core, then the deploy wing's
bundle and backends that the train wing may use, then the train wing, then the runtime and
serving, the use cases and the CLI), bottom first. Reported:

* ``edges``: layer -> layer import counts (module-level and function-level together);
* ``upward``: imports from a layer to one above it (what the layers contract forbids);
* ``cycles``: pairs of layers that import each other (in either direction);
* ``function_level``: project imports written inside a function (lazy imports: fine for heavy
  optional dependencies, a smell when they hide a cycle); each one that is kept says why in a
  ``# lazy: ...`` comment on its line or on the comment lines right above it (a run of
  imports shares the comment above its first line);
* ``function_level_uncommented``: those without that comment (``tests/test_function_imports.py``
  holds the committed allowance and fails on any uncommented one);
* ``runtime_heavy``: torch / matplotlib / scipy imports reachable from the deploy wing and the
  core (``core``, ``bundle``, ``backends``, ``runtime``, ``serve``) through module-level
  imports (what a device without them would trip over).

``lint-imports`` (import-linter, contracts in ``.importlinter``) is the check the test suite
runs; this script is the report for humans and for comparing two checkouts.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

#: bottom first, one order consistent with .importlinter's floor plan ("errors" is an old
#: checkout's bottom layer, now dymu_rt.core.errors; "train" is "training" before issue 26's rename)
LAYERS = ["errors", "core", "bundle", "backends", "utils", "tasks", "data", "models", "control", "run", "train",
          "training", "evaluate", "compile", "runtime", "serve", "demo", "check", "compare", "app", "cli"]
DEPLOY = ("core", "bundle", "backends", "runtime", "serve")
HEAVY = ("torch", "matplotlib", "scipy")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for dymu_rt/ (and an old checkout's top-level cli/, which
    installed as dymu_rt.cli)."""
    mods = {}
    for top, name in (("dymu_rt", "dymu_rt"), ("cli", "dymu_rt.cli")):
        base = root / top
        if not base.is_dir():
            continue
        for f in base.rglob("*.py"):
            if "__pycache__" in f.parts:
                continue
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([name, *parts])] = f
    return mods


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "cli":
        return "cli"
    if parts[0] != "dymu_rt" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


LAZY_TAG = "# lazy:"


def _commented(lines: list[str], lineno: int) -> bool:
    """Whether the import on line ``lineno`` (1-based) carries a ``# lazy:`` comment: on its
    own line or on the comment lines directly above it, skipping the imports of its run."""
    i = lineno - 1
    if LAZY_TAG in lines[i]:
        return True
    i -= 1
    while i >= 0:
        text = lines[i].strip()
        if text.startswith("#"):
            if text.startswith(LAZY_TAG):
                return True
        elif not (text.startswith(("from ", "import ")) and not text.endswith("(")):
            return False
        i -= 1
    return False


def _imports(path: Path, module: str):
    """(imported module, function-level?, has a ``# lazy:`` comment?) per import of a file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []

    def visit(node, in_func: bool):
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                why = in_func and _commented(lines, child.lineno)
            if isinstance(child, ast.Import):
                out.extend((a.name, in_func, why) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("cli"):           # old layout: top-level `cli` package
                    target = "dymu_rt." + target
                names = [f"{target}.{a.name}" for a in child.names]
                if child.module is None:
                    out.extend((n, in_func, why) for n in names)
                else:
                    out.append((target, in_func, why))
            visit(child, inner)

    visit(tree, False)
    return out


def analyse(root: Path) -> dict:
    mods = _modules(root)
    edges: Counter = Counter()
    upward, function_level, uncommented = [], [], []
    module_deps = defaultdict(set)
    heavy_direct = defaultdict(set)
    for mod, path in sorted(mods.items()):
        src = layer_of(mod)
        for target, in_func, why in _imports(path, mod):
            top = target.split(".")[0]
            if top in HEAVY and not in_func:
                heavy_direct[mod].add(top)
            if top not in ("dymu_rt", "cli"):
                continue
            dst = layer_of(target)
            if in_func:
                function_level.append(f"{mod} -> {target}")
                if not why:
                    uncommented.append(f"{mod} -> {target}")
            else:
                # resolve to the longest known module (``from pkg import name`` may name an object)
                t = target
                while t and t not in mods:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t:
                    module_deps[mod].add(t)
            if src is None or dst is None or src == dst:
                continue
            edges[(src, dst)] += 1
            if LAYERS.index(dst) > LAYERS.index(src):
                upward.append(f"{mod} -> {target}{' (in a function)' if in_func else ''}")
    pairs = {tuple(sorted(p)) for p in edges}
    cycles = sorted(f"{a} <-> {b}" for a, b in pairs if (a, b) in edges and (b, a) in edges)
    # torch & co. reachable from the runtime through module-level imports (package __init__s included)
    seen, stack, heavy = set(), [m for m in mods if layer_of(m) in DEPLOY], set()
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        heavy |= {f"{h} (via {m})" for h in heavy_direct.get(m, ())}
        parents = [".".join(m.split(".")[:i]) for i in range(2, len(m.split(".")))]
        stack.extend(d for d in module_deps.get(m, set()) | {p for p in parents if p in mods} if d not in seen)
    return {"root": str(root), "modules": len(mods),
            "edges": {f"{a} -> {b}": n for (a, b), n in sorted(edges.items(), key=lambda kv: (LAYERS.index(kv[0][0]), LAYERS.index(kv[0][1])))},
            "upward": upward, "cycles": cycles, "function_level": function_level,
            "function_level_uncommented": uncommented,
            "runtime_heavy": sorted(heavy)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="checkout to analyse (default: this one)")
    ap.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = ap.parse_args(argv)
    if not (args.root / "dymu_rt").is_dir():
        print(f"error: --root {args.root} has no dymu_rt/ folder", file=sys.stderr)
        return 2
    rep = analyse(args.root)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"{rep['root']}: {rep['modules']} modules")
    print("layer -> layer imports (bottom layers first):")
    for k, n in rep["edges"].items():
        print(f"  {k}: {n}")
    print(f"upward imports: {len(rep['upward'])}")
    for u in rep["upward"]:
        print(f"  {u}")
    print(f"layer cycles: {len(rep['cycles'])}  {', '.join(rep['cycles'])}")
    lib = [f for f in rep["function_level"] if not f.startswith("dymu_rt.cli")]
    print(f"function-level project imports: {len(rep['function_level'])} (library {len(lib)}, "
          f"cli {len(rep['function_level']) - len(lib)}); without a '{LAZY_TAG}' comment: "
          f"{len(rep['function_level_uncommented'])}")
    for f in rep["function_level_uncommented"]:
        print(f"  {f}")
    print(f"torch/matplotlib/scipy reachable from the deploy wing and core at import: {len(rep['runtime_heavy'])}")
    for h in rep["runtime_heavy"]:
        print(f"  {h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
