"""Layering guard: `lint-imports` (contracts in .importlinter) passes on the source tree, and
the same contracts fail on a copy of the tree with one new upward import — so a future
upward import, or a torch import reaching the runtime, fails the suite."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")

pytestmark = pytest.mark.skipif(not Path(LINT).is_file(), reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH = the tree under test first, so grimp analyses that copy of dymu_rt.
    return subprocess.run([LINT, "--config", str(root / ".importlinter"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=300,
                          env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root)})


def test_contracts_are_kept():
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in res.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("tasks/base.py", "import dymu_rt.runtime.cache", "Layers import downward only BROKEN"),
    ("bundle/sections.py", "from dymu_rt.backends import registry", "Layers import downward only BROKEN"),
    ("runtime/binding.py", "from dymu_rt.compile import fold", "(directly or indirectly) BROKEN"),
    ("runtime/cache.py", "import dymu_rt.serve.triton.export", "Layers import downward only BROKEN"),
    ("serve/triton/check.py", "from dymu_rt.compile import fold", "(directly or indirectly) BROKEN"),
])
def test_a_new_upward_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "dymu_rt", tmp_path / "dymu_rt", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "dymu_rt" / module
    target.write_text(target.read_text() + f"\n{line}  # injected by tests/test_layers.py\n")
    res = _lint(tmp_path)
    assert res.returncode != 0 and broken in res.stdout, res.stdout[-3000:]
