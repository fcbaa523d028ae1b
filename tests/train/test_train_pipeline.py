"""Training stages end to end on tiny settings: resumable, one run directory, loadable."""

import json

import numpy as np
import pytest
import torch

from dymu_rt.core.errors import CheckpointError, ValidationError
from dymu_rt.run.layout import RunDir


@pytest.fixture()
def tiny_run(tmp_path, tiny_preset):
    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    return run


def test_anchor_stage_resumes_after_a_kill_and_matches_an_uninterrupted_run(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor

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
    from dymu_rt.training.pipeline import train

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
    from dymu_rt.training.controller import train_edge

    with pytest.raises(CheckpointError, match="stage 'anchor' must finish first"):
        train_edge(tiny_run, progress=False)


def test_open_run_refuses_a_different_preset(tmp_path, tiny_run):
    from dymu_rt.training.pipeline import open_run

    with pytest.raises(ValidationError, match="holds a run of preset"):
        open_run(tiny_run.path, "cifar100", None)
    with pytest.raises(ValidationError, match="give --preset"):
        open_run(tmp_path / "fresh", None, None)


def test_shared_init_pretrains_one_backbone_copies_it_into_every_stream_and_resumes(tmp_path, tiny_preset):
    """--init shared (issue 22): the shared-encoder pre-training is its own resumable loop; after it
    every stream starts from the same backbone; a run killed inside the pre-training and resumed
    ends bitwise where an uninterrupted one does. Cost: ~4 s."""
    from dymu_rt.training.anchor import PRETRAIN, initialize_streams, train_anchor
    from dymu_rt.training.setup import TrainSetup

    preset = tiny_preset.with_train(anchor_init="shared", anchor_pretrain_steps=4)
    a = RunDir(tmp_path / "a")
    a.init(preset, data="synth")
    train_anchor(a, n_train=8, n_val=4, progress=False, save_every=2)
    assert a.stage_done(PRETRAIN) and a.stage_done("anchor")
    assert a.read_config()["stages"]["anchor"]["init"] == "shared"
    # Right after the init, every stream equals the pre-trained stream 0.
    fresh = preset.build()
    assert initialize_streams(a, fresh, "synth", 0, 2, 8, False, TrainSetup())
    s0 = fresh.streams[0].state_dict()
    for j in (1, 2):
        sj = fresh.streams[j].state_dict()
        assert all(torch.equal(s0[k], sj[k]) for k in s0)
    # Killed during the pre-training, then resumed: the same anchor as the uninterrupted run.
    b = RunDir(tmp_path / "b")
    b.init(preset, data="synth")
    res = train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2, stop_after=2)
    assert res["done"] is False and not b.stage_done(PRETRAIN)
    train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2)
    sa, sb = a.load_anchor().state_dict(), b.load_anchor().state_dict()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k


def test_runs_stored_before_issue_22_keep_their_meaning(tiny_preset):
    """A stored preset without the new settings was trained with independent streams and the
    child reading of Eq. 3, whatever today's defaults are."""
    from dymu_rt.models.presets import Preset

    d = tiny_preset.to_dict()
    for k in ("active_reading", "anchor_init", "anchor_pretrain_steps"):
        del d["train"][k]
    old = Preset.from_dict(d)
    assert old.train.active_reading == "child" and old.train.anchor_init == "independent"


def test_init_option_is_validated(tmp_path):
    from dymu_rt.training.pipeline import anchor_overrides, open_run

    with pytest.raises(ValidationError, match="--init 'imagenet'"):
        anchor_overrides(None, None, None, None, None, None, "imagenet")
    with pytest.raises(ValidationError, match="--pretrain-steps"):
        anchor_overrides(None, None, None, None, None, None, "shared", 0)
    over = anchor_overrides(None, None, None, None, None, None, f"pretrained:{tmp_path / 'absent.pt'}")
    with pytest.raises(ValidationError, match="no such file"):
        open_run(tmp_path / "run", "synth-nyu", None, {k: v for k, v in over.items() if v is not None})
    assert not (tmp_path / "run").exists()           # refused before anything was written


def test_l2sp_and_finetune_lr_keep_streams_near_the_shared_init_and_resume(tmp_path, tiny_preset):
    """Issue 22's retention levers: the L2-SP term is alpha/2 * sum_j ||theta_j - theta_init||^2
    over the streams (0 right after the init), a strong one keeps the fine-tuned streams closer to
    the shared weights than none does, anchor_finetune_lr replaces the fine-tune's peak lr only
    after a shared/pretrained init, and a killed L2-SP run resumes to the uninterrupted result
    (the reference is rebuilt from the saved pre-training). Cost: ~10 s idle, ~30 s at load 6."""
    from dymu_rt.training.anchor import initialize_streams, l2sp_term, train_anchor
    from dymu_rt.training.common import anchor_lr, validate_train_config
    from dymu_rt.training.setup import TrainSetup

    base = tiny_preset.with_train(anchor_init="shared", anchor_pretrain_steps=3, anchor_steps=6, anchor_lr=0.05)

    def drift(run):
        ref = base.build()
        assert initialize_streams(run, ref, "synth", 0, 2, 8, False, TrainSetup())
        r0 = torch.cat([p.detach().flatten() for p in ref.streams[0].parameters()])
        net = run.load_anchor()
        return max(float((torch.cat([p.detach().flatten() for p in s.parameters()]) - r0).norm())
                   for s in net.streams)

    runs = {}
    for tag, over in {"none": {}, "l2sp": {"anchor_l2sp": 50.0}}.items():
        runs[tag] = RunDir(tmp_path / tag)
        runs[tag].init(base.with_train(**over), data="synth")
        train_anchor(runs[tag], n_train=8, n_val=4, progress=False, save_every=2)
    assert drift(runs["l2sp"]) < 0.5 * drift(runs["none"])
    # The term itself: 0 at the init, alpha/2 * ||delta||^2 after moving one parameter.
    net = base.with_train(anchor_l2sp=2.0).build()
    run = runs["l2sp"]
    assert initialize_streams(run, net, "synth", 0, 2, 8, False, TrainSetup())
    term = l2sp_term(RunDir(run.path), net, "synth", 0, 2, 8, TrainSetup())
    assert float(term().detach()) == 0.0
    p = next(net.streams[1].parameters())
    with torch.no_grad():
        p.view(-1)[0] += 0.5
    assert float(term().detach()) == pytest.approx(50.0 / 2 * 0.25, rel=1e-5)    # the run's alpha (50) is used
    # Killed mid fine-tune and resumed: the same anchor.
    b = RunDir(tmp_path / "b")
    b.init(base.with_train(anchor_l2sp=50.0), data="synth")
    train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2, stop_after=2)   # stops in the pre-training
    train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2, stop_after=3)   # ends the pre-training, stops in the fine-tune
    assert b.stage_done("anchor-pretrain") and not b.stage_done("anchor")
    train_anchor(b, n_train=8, n_val=4, progress=False, save_every=2)
    sa, sb = runs["l2sp"].load_anchor().state_dict(), b.load_anchor().state_dict()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k
    # The fine-tune lr: only after a shared/pretrained init.
    low = base.with_train(anchor_finetune_lr=0.01).train
    assert anchor_lr(low, 3) == pytest.approx(anchor_lr(base.train, 3) * 0.2)
    indep = base.with_train(anchor_init="independent", anchor_finetune_lr=0.01).train
    assert anchor_lr(indep, 3) == anchor_lr(base.with_train(anchor_init="independent").train, 3)
    for bad in (dict(anchor_l2sp=-1.0), dict(anchor_finetune_lr=float("nan")), dict(anchor_l2sp=True)):
        with pytest.raises(ValidationError, match="anchor_"):
            validate_train_config(base.with_train(**bad).train)
