"""The documentation: the README stays short, the site builds with warnings as errors, the CLI
reference matches the app, and every code block marked runnable runs as written.

Cost: ~1 s (reference) + ~3 s (mkdocs build) + ~3 s (the Python API snippet) on 2 cores.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = re.compile(r"<!-- runnable -->\s*```(python|bash)\n(.*?)```", re.S)


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks() -> list[tuple[str, str, str]]:
    """(where, language, code) of every block marked ``<!-- runnable -->``."""
    out = []
    for f in _doc_files():
        for i, m in enumerate(RUNNABLE.finditer(f.read_text())):
            out.append((f"{f.relative_to(ROOT)}#{i}", m.group(1), m.group(2)))
    return out


def test_readme_is_short_and_keeps_the_ci_blocks():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "<!-- ci:tests -->" in text and "<!-- ci:quickstart -->" in text
    assert "@@" not in text                      # no placeholder left behind


def test_there_are_runnable_blocks_and_the_python_api_is_one():
    blocks = runnable_blocks()
    assert any(w.startswith("README.md") and lang == "python" and "Runtime.open" in code
               for w, lang, code in blocks)


@pytest.mark.parametrize("where, lang, code", runnable_blocks(), ids=[b[0] for b in runnable_blocks()])
def test_runnable_block_runs_as_written(where, lang, code, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{where} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"


def test_cli_reference_matches_the_app():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == mod.render(), "docs/cli.md is stale: run python scripts/gen_cli_reference.py"
    for command in ("run", "profile", "inspect", "demo", "build"):   # examples in --help
        section = committed.split(f"## `dymu-rt {command}`")[1].split("## `")[0]
        assert "Examples:" in section and f"dymu-rt {command}" in section


def test_mkdocs_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it comes with the [test] extra: pip install -e '.[test]')")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
