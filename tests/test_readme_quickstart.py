"""The README's quick-start commands run as written.

The block marked ``<!-- ci:quickstart -->`` is executed line by line in a temporary
folder; the only change is ``--scale 0.02`` appended to ``dymu-rt demo`` (tiny settings
through the demo's own option, same code path). Lines run through the installed console
script, exactly as a user types them.
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quickstart_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- ci:quickstart -->\s*```bash\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- ci:quickstart --> bash block"
    lines = []
    for raw in m.group(1).splitlines():
        line = raw.split("  #")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def test_readme_quickstart_block_is_the_documented_tour():
    lines = quickstart_lines()
    assert lines[0].startswith("dymu-rt demo")
    assert any(l.startswith("dymu-rt run --r 0.6,0.2,0.2 --c 0.5") for l in lines)


@pytest.mark.slow
def test_readme_quickstart_commands_run(tmp_path):
    exe = shutil.which("dymu-rt")
    if exe is None:
        pytest.skip("the dymu-rt console script is not installed (pip install -e .)")
    env = {**os.environ, "COLUMNS": "120"}
    for line in quickstart_lines():
        args = shlex.split(line)
        if args[:2] == ["dymu-rt", "demo"]:
            args += ["--scale", "0.02", "--quiet"]
        res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
        assert res.returncode == 0, f"`{line}` failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert (tmp_path / "demo-out" / "side_by_side.png").is_file()
    assert (tmp_path / "demo-out" / "summary.json").is_file()
