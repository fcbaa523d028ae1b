"""A fresh-clone walk-through: the README's quick start runs as written, in an empty folder.

The block marked ``<!-- ci:quickstart -->`` is executed line by line in a temporary folder;
the only change is ``--scale 0.02 --quiet`` appended to ``dymu-rt demo`` (tiny settings
through the demo's own option, same code path). Each line runs as ``python -m dymu_rt.cli``
with this interpreter (what the ``dymu-rt`` console script runs), so it never depends on
what is on PATH, and stdout is a pipe, as in a CI log: tables must come out whole. Each
command's exit code and the files it promises are checked. The user cache is the test's
own ($XDG_CACHE_HOME, tests/conftest.py).

Cost: one tiny demo (~30 s on 2 idle cores) plus ~10 s for the other commands.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

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
    assert all(line.startswith("dymu-rt ") for line in lines)
    assert any(line.startswith("dymu-rt run --r 0.6,0.2,0.2 --c 0.5") for line in lines)


def _check(args: list[str], res, cwd: Path) -> None:
    """What each quick-start command promises, beyond exit code 0."""
    out = res.stdout
    assert "…" not in out, f"a table was cut in a log:\n{out[-2000:]}"    # full width when not a terminal
    assert "━━━" not in out or "┏" in out, "a progress bar was drawn into a log"
    cmd = args[0]
    opts = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
    if cmd == "demo":
        d = cwd / opts["--out"]
        summary = json.loads((d / "summary.json").read_text())
        assert (d / "side_by_side.png").is_file() and (d / "bundle" / "manifest.json").is_file()
        assert len(summary["runs"]) == 3 and all(r["accuracy"] for r in summary["runs"])
        assert "which preference ran which tree" in out and "uniform (1/3 each)" in out
        assert " MB" not in out                                               # sizes in MiB
        _check_demo_outputs(d, summary)
    elif cmd == "run":
        d = cwd / opts["--out"]
        overviews = sorted(d.glob("*_overview.png"))
        assert overviews, f"no overview in {d}"
        for ov in overviews:
            src = next(p for p in (cwd / "demo-out" / "images").glob(f"{ov.name[:-len('_overview.png')]}.png"))
            task_png = next(p for p in d.glob(f"{src.stem}_*.png") if p != ov)
            assert Image.open(task_png).size == Image.open(src).size          # the input's geometry
        assert "first call (cold)" in out and "runs after" in out
        if "--latency-budget" in opts:
            assert "latency budget" in out
    elif cmd == "profile":
        caches = list(Path(os.environ["XDG_CACHE_HOME"], "dymu-rt", "latency").glob("*.json"))
        assert caches and "stored in" in out                                  # the shipped bundle: user cache
    elif cmd == "inspect":
        assert "topologies" in out and "measured latency on x86-64-cpu" in out
    elif cmd == "profiles":
        assert "x86-64-cpu" in out


def _check_demo_outputs(out: Path, summary: dict) -> None:
    """What the demo reports and draws is what its bundle computes (issue 28 #8): every
    topology was profiled, and each segmentation picture is the VOC palette applied to the
    argmax of Runtime.infer at that preference (written out here), resized to the image with
    PIL's nearest neighbour: at least 99 % of the pixels equal (resampling edges aside)."""
    import numpy as np

    from dymu_rt.runtime import Runtime
    from dymu_rt.core.render import label_palette

    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert set(summary["latency"]) == set(manifest["topologies"])
    assert all(row["p50_ms"] > 0 for row in summary["latency"].values())
    rt = Runtime.open(out / "bundle", cache_engines=False, second_tier="off")
    scene = Image.open(out / "images" / "scene_0.png").convert("RGB")
    for run in summary["runs"]:
        assert run["topology"] in manifest["topologies"]
        rt.set_preference(run["r"], run["c"])
        raw = rt.infer([scene])
        folder = out / "outputs" / f"r{'-'.join(f'{v:.2f}' for v in run['r'])}_c{run['c']:g}"
        for t in rt.tasks:
            pic = np.asarray(Image.open(folder / f"scene_0_{t.name}.png").convert("RGB"))
            assert pic.shape[:2] == (scene.height, scene.width)                # the input's geometry
            if t.kind == "segmentation":
                labels = raw[t.name][0].argmax(axis=0).astype(np.uint8)
                want = Image.fromarray(labels).resize(scene.size, Image.NEAREST)
                agree = (pic == label_palette(256)[np.asarray(want)]).all(axis=-1).mean()
                assert agree >= 0.99, f"{folder.name} {t.name}: {agree:.3f} of the pixels match the inference"
    rt.close()


@pytest.mark.slow
def test_readme_quickstart_commands_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}         # as a CI log: no terminal
    for line in quickstart_lines():
        args = shlex.split(line)[1:]                                      # after "dymu-rt"
        if args[0] == "demo":
            args += ["--scale", "0.02", "--quiet"]
        res = subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], cwd=tmp_path, capture_output=True,
                             text=True, env=env, timeout=900)
        assert res.returncode == 0, f"`{line}` failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        _check(args, res, tmp_path)
