"""Training stages end to end on tiny settings: resumable, one run directory, loadable."""

import json

import numpy as np
import pytest
import torch

from dymu_rt.errors import CheckpointError, ValidationError
from dymu_rt.train.checkpoint import RunDir


@pytest.fixture()
def tiny_run(tmp_path, tiny_preset):
    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    return run


def test_anchor_stage_resumes_after_a_kill_and_matches_an_uninterrupted_run(tmp_path, tiny_preset):
    from dymu_rt.train.anchor import train_anchor

    a = RunDir(tmp_path / "a")
    a.init(tiny_preset, data="synth")
    train_anchor(a, n_train=8, n_val=4, progress=False, save_every=2)
    b = RunDir(tmp_path / "b")
    b.init(tiny_preset, data="synth")
    res = train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2, stop_after=2)
    assert res == {"done": False, "step": 2} and not b.stage_done("anchor")
    train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2)
    assert b.stage_done("anchor")
    sa = a.load_anchor().state_dict()
    sb = b.load_anchor().state_dict()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k
    logged = [json.loads(l)["step"] for l in (tmp_path / "b" / "logs" / "anchor.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))


def test_all_stages_produce_a_loadable_controller(tiny_run):
    from dymu_rt.train.pipeline import train

    cfg = train(tiny_run, "all", n_train=8, n_val=4, progress=False)
    assert all(cfg["stages"][s]["done"] for s in ("anchor", "edge", "weight"))
    preset, anchor, edge, weight = tiny_run.load_all()
    r, c = torch.tensor([0.6, 0.2, 0.2]), torch.tensor(0.5)
    parents = edge.architecture(r, c)
    assert parents.shape == (anchor.num_layers, anchor.num_tasks)
    out = anchor(torch.rand(1, 3, 32, 32), parents, weight(r, c))
    assert set(out) == {"semseg", "normals", "depth"}
    assert (tiny_run.path / "affinity.json").is_file()
    # Re-running a finished run is a no-op.
    before = (tiny_run.path / "weight_hypernet.safetensors").stat().st_mtime_ns
    train(tiny_run, "all", n_train=8, n_val=4, progress=False)
    assert (tiny_run.path / "weight_hypernet.safetensors").stat().st_mtime_ns == before


def test_controller_needs_a_trained_anchor(tiny_run):
    from dymu_rt.train.controller import train_edge

    with pytest.raises(CheckpointError, match="stage 'anchor' must finish first"):
        train_edge(tiny_run, progress=False)


def test_open_run_refuses_a_different_preset(tmp_path, tiny_run):
    from dymu_rt.train.pipeline import open_run

    with pytest.raises(ValidationError, match="holds a run of preset"):
        open_run(tiny_run.path, "cifar100", None)
    with pytest.raises(ValidationError, match="give --preset"):
        open_run(tmp_path / "fresh", None, None)
