"""Floor-plan guard: `lint-imports` (the contracts in .importlinter) passes on the source tree,
and each contract fails on a copy of the tree into which one edge that breaks it -- and only
it -- is injected. So a future import across a wall (a torch import reaching the deploy wing,
the core importing a wing, the train wing importing the runtime, either wing importing a use
case, an upward import inside a wing, a run reader importing the training loops) fails the suite."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")

pytestmark = pytest.mark.skipif(not Path(LINT).is_file(), reason="import-linter is not installed (pip install -e '.[test]')")

#: contract id -> (module to edit, line injected, the contract's name prefix in lint-imports' report)
INJECTIONS = {
    "core": ("core/tree.py", "import dymu_rt.bundle.schema", "core:"),
    "deploy-wing": ("runtime/binding.py", "import dymu_rt.tasks.weights", "deploy-wing:"),
    "deploy-no-torch": ("bundle/sections.py", "import torch", "deploy-no-torch:"),
    "deploy-layers": ("bundle/sections.py", "from dymu_rt.backends import registry", "deploy-layers:"),
    "train-wing": ("compile/export.py", "import dymu_rt.runtime.cache", "train-wing:"),
    "train-layers": ("models/heads.py", "import dymu_rt.run.layout", "train-layers:"),
    "top": ("app/check.py", "import dymu_rt.cli.common", "top:"),
    "methods-door": ("app/inspect.py", "import dymu_rt.methods.adashare", "methods-door:"),
    # a reader of a run folder reaching into the training loops for it (issue 26: dymu_rt.run)
    "run-readers": ("evaluate/report.py", "from dymu_rt.training.static_run import save_result", "run-readers:"),
}

#: where the methods registry sits (issue 26): on top of the train wing, so compile importing
#: it breaks train-layers (and only it). (The deploy wing's contracts name dymu_rt.methods too;
#: an edge from there also reaches torch and closes cycles, so it breaks several at once.)
METHODS_PLACEMENT = [
    (("train-layers",), "compile/build.py", "import dymu_rt.methods"),
]


def _lint(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH = the tree under test first, so grimp analyses that copy of dymu_rt.
    return subprocess.run([LINT, "--config", str(root / ".importlinter"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root)})


def _verdicts(report: str) -> dict[str, str]:
    """contract id -> "KEPT" | "BROKEN", from the report's (possibly wrapped) contract lines."""
    flat = " ".join(report.split())
    return {cid: m.group(1) for cid in INJECTIONS
            for m in [re.search(re.escape(cid) + r": [^:]*? (KEPT|BROKEN)", flat)] if m}


def test_contracts_are_kept():
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert f"Contracts: {len(INJECTIONS)} kept, 0 broken." in res.stdout
    assert _verdicts(res.stdout) == {cid: "KEPT" for cid in INJECTIONS}
    ids = re.findall(r"^\[importlinter:contract:([\w-]+)\]", (ROOT / ".importlinter").read_text(), re.MULTILINE)
    assert sorted(ids) == sorted(INJECTIONS), "every contract has an injection test"


@pytest.mark.parametrize("broken, module, line",
                         [((c,), m, ln) for c, (m, ln, _) in sorted(INJECTIONS.items())] + METHODS_PLACEMENT)
def test_an_injected_edge_breaks_its_contract_and_only_it(tmp_path, broken, module, line):
    shutil.copytree(ROOT / "dymu_rt", tmp_path / "dymu_rt", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "dymu_rt" / module
    target.write_text(target.read_text() + f"\n{line}  # injected by tests/test_layers.py\n")
    res = _lint(tmp_path)
    assert res.returncode != 0, res.stdout[-3000:]
    verdicts = _verdicts(res.stdout)
    assert verdicts == {cid: "BROKEN" if cid in broken else "KEPT" for cid in INJECTIONS}, res.stdout[-3000:]
