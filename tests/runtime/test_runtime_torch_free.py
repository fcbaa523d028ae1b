"""The base install runs bundles without torch: in a subprocess whose import system refuses
torch, matplotlib, scipy, onnx and onnx-graphsurgeon (what `pip install dymu-rt` leaves out),
`dymu-rt run`, `profile`, `inspect` and `profiles` on the shipped bundle and the Python
Runtime work, and a command that needs torch says in one line which extra to install."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from dymu_rt.bundle.layout import default_bundle_path

BLOCKED = ("torch", "matplotlib", "scipy", "onnx", "onnx_graphsurgeon")
PRELUDE = textwrap.dedent(f"""
    import importlib.abc, sys

    class RefuseExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"No module named {{name!r}} (refused: not in the base install)", name=name)

    sys.meta_path.insert(0, RefuseExtras())
""")


def _py(code: str, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "COLUMNS": "120"})


CLI = """
    from dymu_rt.cli.main import main
    main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image
    import numpy as np

    p = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((70, 90, 3)) * 255).astype("uint8")).save(p)
    return p


API = """
    import json
    import numpy as np
    from dymu_rt.runtime import Runtime, default_bundle_path
    rt = Runtime.open(default_bundle_path())
    info = rt.set_preference([0.6, 0.2, 0.2], 0.5)
    out = rt.infer(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"topology": info["topology"], "shapes": {k: list(v.shape) for k, v in out.items()},
                      "heavy": heavy, "gmacs": rt.stats()["gmacs"]}))
"""


def test_runtime_api_without_torch():
    res = _py(f"BLOCKED = {BLOCKED!r}\n" + textwrap.dedent(API))
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["gmacs"] > 0
    assert got["shapes"] == {"semseg": [2, 13, 64, 64], "normals": [2, 3, 64, 64], "depth": [2, 1, 64, 64]}


def test_run_command_without_torch(tmp_path, image):
    res = _py(CLI, "run", image, "--r", "0.6,0.2,0.2", "--c", "0.5", "--out", tmp_path / "out", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert set(summary["outputs"]) == {"semseg", "normals", "depth", "overview"}
    for f in summary["outputs"].values():
        assert (tmp_path / "out").joinpath(f.rsplit("/", 1)[-1]).stat().st_size > 0


def test_profile_inspect_profiles_without_torch(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    for p in [bundle, *bundle.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    res = _py(CLI, "profile", "--bundle", bundle, "--iters", "2", "--warmup", "0", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout)["topologies"]
    assert len(rows) == len(json.loads((bundle / "manifest.json").read_text())["topologies"])
    assert all(r["p50_ms"] > 0 and r["achieved_gflop_s"] > 0 for r in rows)
    res = _py(CLI, "inspect", bundle, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["n_topologies"] == len(rows), res.stderr[-2000:]
    res = _py(CLI, "profiles")
    assert res.returncode == 0 and "x86-64-cpu" in res.stdout, res.stderr[-2000:]


def test_a_command_needing_torch_names_the_extra(tmp_path):
    res = _py(CLI, "train", "--preset", "synth-nyu", "--out", tmp_path / "run")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dymu-rt train: ") and \
        'pip install "dymu-rt[train]"' in lines[0], res.stderr
