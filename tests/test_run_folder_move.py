"""scripts/run_folder_move.py (issue 26: the run folder in dymu_rt/run, the train wing in
dymu_rt/training) is idempotent, does what it says on a tree with the old layout, and this
tree is its fixed point -- so a merged branch that still imports ``dymu_rt.train.checkpoint``
& co. fails here until the script is rerun. ~1 s (one small git repository in tmp_path)."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run_folder_move", ROOT / "scripts" / "run_folder_move.py")
move = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(move)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the script moves files with git mv")

OLD_TREE = {
    "dymu_rt/__init__.py": '"""dymu_rt."""\n',
    "dymu_rt/train/__init__.py": '"""dymu_rt.train."""\n',
    "dymu_rt/train/checkpoint.py": "class RunDir:\n    pass\n",
    "dymu_rt/train/run_schema.py": "def validate_run_config(cfg, path):\n    pass\n",
    "dymu_rt/train/static_run.py": "STATIC_STAGES = ()\nARCHITECTURE = MODEL = ''\n"
                                   "def method_of(run):\n    pass\ndef save_result():\n    pass\n",
    "dymu_rt/train/static.py": "from dymu_rt.train.static_run import ARCHITECTURE, MODEL, method_of, save_result\n",
    "dymu_rt/train/common.py": "class JsonlLog:\n    pass\ndef make_split():\n    pass\n",
    "dymu_rt/train/phn.py": "",
    "dymu_rt/compile/build.py": (
        "from dymu_rt.train.checkpoint import RunDir\n"
        "from dymu_rt.train.static import method_of  # noqa: E402\n"
        "from dymu_rt.train.common import (JsonlLog,\n"
        "                                  make_split)\n"
        "from dymu_rt.train import checkpoint\n"
        "import dymu_rt.train.pipeline as pipeline\n"
        "from dymu_rt import train\n"
        "run = train('out')   # the public function: dymu_rt.train stays\n"
        "TABLE = {\"method_of\": \"dymu_rt.train.static\", \"open_run\": \"dymu_rt.train.pipeline\"}\n"),
    "docs/design.md": ("RunDir is in dymu_rt/train/checkpoint.py (see train/run_schema.py and train/phn.py;\n"
                       "tests/train/test_x.py and train/not_a_module.py stay).\n"),
    ".importlinter": "layers =\n    dymu_rt.compile\n    dymu_rt.train\n",
    "pyproject.toml": 'packages = ["dymu_rt", "dymu_rt.train", "dymu_rt.compile"]\n',
}

WANT = {
    "dymu_rt/compile/build.py": (
        "from dymu_rt.run.layout import RunDir\n"
        "from dymu_rt.run.layout import method_of  # noqa: E402\n"
        "from dymu_rt.training.common import make_split\n"
        "from dymu_rt.run.logs import JsonlLog\n"
        "from dymu_rt.run import layout as checkpoint\n"
        "import dymu_rt.training.pipeline as pipeline\n"
        "from dymu_rt import train\n"
        "run = train('out')   # the public function: dymu_rt.train stays\n"
        "TABLE = {\"method_of\": \"dymu_rt.run.layout\", \"open_run\": \"dymu_rt.training.pipeline\"}\n"),
    "dymu_rt/training/static.py": ("from dymu_rt.training.static_run import save_result\n"
                                   "from dymu_rt.run.layout import ARCHITECTURE, MODEL, method_of\n"),
    "docs/design.md": ("RunDir is in dymu_rt/run/layout.py (see run/schema.py and training/phn.py;\n"
                       "tests/train/test_x.py and train/not_a_module.py stay).\n"),
    ".importlinter": "layers =\n    dymu_rt.compile\n    dymu_rt.training\n",
    "pyproject.toml": 'packages = ["dymu_rt", "dymu_rt.training", "dymu_rt.run", "dymu_rt.compile"]\n',
}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


def test_the_script_moves_an_old_tree_and_a_second_run_changes_nothing(tmp_path):
    for rel, text in OLD_TREE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "old layout")

    assert move.run(tmp_path) > 0
    first = _snapshot(tmp_path)
    assert not (tmp_path / "dymu_rt" / "train").exists()
    assert first["dymu_rt/run/layout.py"] == OLD_TREE["dymu_rt/train/checkpoint.py"]
    assert first["dymu_rt/run/schema.py"] == OLD_TREE["dymu_rt/train/run_schema.py"]
    for rel, text in WANT.items():
        assert first[rel] == text, rel
    staged = _git(tmp_path, "status", "--porcelain")
    assert "R  dymu_rt/train/checkpoint.py -> dymu_rt/run/layout.py" in staged      # moved with git mv

    assert move.run(tmp_path) == 0
    assert _snapshot(tmp_path) == first


def test_the_script_stops_when_a_module_exists_at_both_places(tmp_path):
    for rel in ("dymu_rt/train/checkpoint.py", "dymu_rt/run/layout.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    with pytest.raises(SystemExit, match="merge them by hand"):
        move.run(tmp_path)


def test_this_tree_is_the_scripts_fixed_point():
    assert not (ROOT / "dymu_rt" / "train").exists()
    stale = [f.relative_to(ROOT).as_posix() for f in move.text_files(ROOT)
             if move.rewrite_text(f.read_text(encoding="utf-8", errors="surrogateescape"), ROOT)
             != f.read_text(encoding="utf-8", errors="surrogateescape")]
    assert stale == [], f"old paths in {stale}: run python scripts/run_folder_move.py ."
