"""AdaShare and DAG end to end on synth-nyu at test scale, through the same CLI and toolchain:
train (one command shape), build, inspect, run (r ignored, --c refused), profile, eval
(delta_t) and compare."""

import json

import pytest

from cli_helpers import run_cli
from dymu_rt.bundle.manifest import validate_manifest
from dymu_rt.bundle.paths import TOPOLOGY_ID_RE
from dymu_rt.core.errors import BundleError

TINY = ["--anchor-steps", "2", "--edge-steps", "2", "--weight-steps", "2", "--batch", "4",
        "--n-train", "16", "--n-val", "4", "--quiet"]


def _train(capsys, out, *method):
    code, stdout, err = run_cli(capsys, "train", *method, "--preset", "synth-nyu", "--out", str(out), *TINY)
    assert code == 0, err
    return stdout


@pytest.mark.slow
def test_adashare_and_dag_train_build_run_eval_compare(capsys, tmp_path):
    from PIL import Image
    import numpy as np

    dymu, ada, dag = tmp_path / "dymu", tmp_path / "ada", tmp_path / "dag"
    _train(capsys, dymu)
    assert run_cli(capsys, "train", "phn-bn", "--out", str(dymu), "--steps", "2", "--quiet")[0] == 0
    out = _train(capsys, ada, "--method", "adashare")
    assert "stages done" in out
    _train(capsys, dag, "--method", "dag", "--flow", "2")
    cfg = json.loads((dag / "config.json").read_text())
    assert cfg["method"] == "dag" and cfg["method_config"]["flow"] == 2
    assert cfg["method_config"]["warmup_steps"] == 2 and cfg["method_config"]["final_steps"] == 2
    assert all(cfg["stages"][s]["done"] for s in ("warmup", "search", "final"))
    # Resuming a finished run with the same command is a no-op; another method is refused.
    assert _train(capsys, dag, "--method", "dag", "--flow", "2")
    code, _, err = run_cli(capsys, "train", "--method", "adashare", "--out", str(dag), "--quiet")
    assert code != 0 and "method 'dag'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--method", "adashare", "--flow", "3", "--preset", "synth-nyu",
                           "--out", str(tmp_path / "x"), "--quiet")
    assert code != 0 and err.startswith("error: --flow applies to --method dag")

    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(img)
    for run in (ada, dag):
        bundle = run / "bundle"
        code, stdout, err = run_cli(capsys, "build", str(run), "--out", str(bundle), "--json")
        assert code == 0, err
        assert json.loads(stdout)["topologies"] == 1
        # The topology id is a bundle topology id (8-64 hex digits, dymu_rt.bundle.paths);
        # the method lives in the manifest's static section.
        manifest = json.loads((bundle / "manifest.json").read_text())
        (tid,) = manifest["topologies"]
        assert TOPOLOGY_ID_RE.fullmatch(tid) and manifest["static"]["method"] == cfg_method(run)
        assert manifest["topologies"][tid]["gflops_paper"] >= manifest["topologies"][tid]["gmacs"] > 0
        # The static form of the schema is strict: a second topology, a grid point or a
        # controller entry is refused.
        for bad in ({**manifest, "topologies": {**manifest["topologies"], "0" * 16: manifest["topologies"][tid]}},
                    {**manifest, "points": [{"r": [1.0, 0.0, 0.0], "c": 0.0, "topology": tid}]},
                    {**manifest, "controller": {"edge_hypernet": {"file": "x.onnx", "sha256": "0" * 64}}}):
            with pytest.raises(BundleError):
                validate_manifest(bad)
        code, stdout, _ = run_cli(capsys, "inspect", str(bundle), "--json", "--verify")
        info = json.loads(stdout)
        assert code == 0 and info["static"]["method"] in ("adashare", "dag") and info["verified"]
        code, stdout, _ = run_cli(capsys, "inspect", str(bundle))
        assert "static architecture" in stdout
        code, _, err = run_cli(capsys, "run", str(img), "--bundle", str(bundle), "--c", "0.5",
                               "--out", str(tmp_path / "o"))
        lines = [l for l in err.splitlines() if l.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and "--c" in lines[0]
        code, stdout, err = run_cli(capsys, "run", str(img), "--bundle", str(bundle), "--r", "0.2,0.3,0.5",
                                    "--out", str(tmp_path / "o"), "--json")
        assert code == 0, err
        res = json.loads(stdout)
        assert res["binding"] == "static" and {"semseg", "normals", "depth"} <= set(res["outputs"])
        code, _, err = run_cli(capsys, "profile", "--bundle", str(bundle), "--iters", "2", "--warmup", "0", "--json")
        assert code == 0, err
        code, stdout, err = run_cli(capsys, "eval", str(run), "--n-val", "4", "--single-task", str(dymu), "--json")
        assert code == 0, err
        rep = json.loads(stdout)
        assert set(rep["delta_t"]["per_task"]) == {"semseg", "normals", "depth"}
        assert rep["table"][0]["delta_t"] == rep["delta_t"]["mean"]
    code, stdout, err = run_cli(capsys, "eval", str(dymu), "--n-val", "4", "--n-r", "2", "--n-cost", "4", "--json")
    assert code == 0, err
    assert set(json.loads(stdout)["delta_t"]["by_c"]) == {"0", "1"}
    code, stdout, err = run_cli(capsys, "compare", str(dymu), str(ada), str(dag), "--n-val", "4", "--rounds", "1",
                                "--iters", "2", "--out", str(tmp_path / "cmp"), "--json")
    assert code == 0, err
    rep = json.loads(stdout)
    labels = [r["label"] for r in rep["rows"]]
    assert labels == ["single-task", "PHN-BN (uniform r)", "DYMU c=0 (uniform r)", "DYMU c=1 (uniform r)",
                      "AdaShare", "DAG M=2"]
    assert rep["rows"][0]["delta_t"]["mean"] == 0.0
    assert all(r["latency_ms"]["p50"] > 0 and r["gmacs"] > 0 for r in rep["rows"])
    assert all(r["gflops_paper"] >= r["gmacs"] for r in rep["rows"])
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    code, _, err = run_cli(capsys, "compare", str(ada), str(dag))
    assert code != 0 and "exactly one DYMU run" in err


def cfg_method(run) -> str:
    return json.loads((run / "config.json").read_text())["method"]
