"""The README's quick-start commands run as written.

The block marked ``<!-- ci:quickstart -->`` is executed line by line in a temporary
folder; the only change is ``--scale 0.02`` appended to ``dymu-rt demo`` (tiny settings
through the demo's own option, same code path). Lines run through the installed console
script, exactly as a user types them.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
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
    # The console script beside this interpreter (what `pip install -e .` in the README's
    # CI block installs), else on PATH. Missing is a failure, not a skip: the README's
    # commands are what a user runs.
    local = Path(sys.executable).parent / "dymu-rt"
    exe = str(local) if local.is_file() else shutil.which("dymu-rt")
    assert exe is not None, "the dymu-rt console script is not installed (pip install -e .)"
    env = {**os.environ, "COLUMNS": "120", "PATH": f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in quickstart_lines():
        args = shlex.split(line)
        if args[:2] == ["dymu-rt", "demo"]:
            args += ["--scale", "0.02", "--quiet"]
        res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
        assert res.returncode == 0, f"`{line}` failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    out = tmp_path / "demo-out"
    assert (out / "side_by_side.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    _check_demo_outputs(out, summary)
    assert {p.name for p in (tmp_path / "run-out").iterdir()} >= {"scene_0_overview.png"}


def _check_demo_outputs(out: Path, summary: dict) -> None:
    """What the demo reports and draws is what its bundle computes: every topology was
    profiled, and each per-task picture equals the task's picture of Runtime.infer at that
    preference (segmentation: the VOC palette on the argmax, checked pixel for pixel)."""
    import numpy as np
    from PIL import Image

    from dymu_rt.runtime import Runtime
    from dymu_rt.tasks.render import label_palette

    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert set(summary["latency"]) == set(manifest["topologies"])
    assert all(row["p50_ms"] > 0 for row in summary["latency"].values())
    rt = Runtime.open(out / "bundle", cache_engines=False)
    scene = Image.open(out / "images" / "scene_0.png").convert("RGB")
    for run in summary["runs"]:
        assert run["topology"] in manifest["topologies"]
        rt.set_preference(run["r"], run["c"])
        raw = rt.infer([scene])
        folder = out / "outputs" / f"r{'-'.join(f'{v:.2f}' for v in run['r'])}_c{run['c']:g}"
        for t in rt.tasks:
            pic = np.asarray(Image.open(folder / f"scene_0_{t.name}.png").convert("RGB"))
            if t.kind == "segmentation":
                np.testing.assert_array_equal(pic, label_palette(256)[raw[t.name][0].argmax(axis=0)])
            assert pic.shape[:2] == raw[t.name].shape[-2:]
