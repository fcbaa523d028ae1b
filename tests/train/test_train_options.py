"""Run options: data validated before writing, saved data options, training settings round
trip (optimizer, schedule, regularizer), corrupt state refused, baselines on clean data."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from dymu_rt.core.errors import CheckpointError, DataError, ValidationError
from dymu_rt.run.layout import RunDir
from dymu_rt.training.pipeline import data_options, open_run


def _cfg(run):
    return json.loads((run.path / "config.json").read_text())


# -- 5. data validated before anything is written; stored absolute ------------------------
def test_bad_data_leaves_no_run_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError, match="not found"):
        open_run(out, "synth-nyu", str(tmp_path / "missing"))
    assert not out.exists()
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(DataError, match="not a known dataset layout"):
        open_run(out, "synth-nyu", str(tmp_path / "not_a_dataset"))
    assert not out.exists()
    with pytest.raises(ValidationError, match="not provided by procedural scenes"):
        open_run(out, "cifar100", "synth")            # tasks the data cannot serve
    assert not out.exists()
    run = open_run(out, "synth-nyu", "synth")          # the right data afterwards is accepted
    assert _cfg(run)["data"] == "synth"


def test_dataset_path_is_stored_absolute(tmp_path, monkeypatch):
    from dymu_rt.data.dataset_writer import write_synth_dataset

    write_synth_dataset(tmp_path / "ds", n=4, size=16, previews=0, progress=False)
    monkeypatch.chdir(tmp_path)
    run = open_run("run", "synth-nyu", "ds")
    assert _cfg(run)["data"] == str((tmp_path / "ds").resolve())
    # The same data named relatively or absolutely is accepted on resume, other data refused.
    open_run("run", None, "ds")
    open_run("run", None, str(tmp_path / "ds"))
    with pytest.raises(ValidationError, match="was trained on data"):
        open_run("run", None, "synth")


# -- 8. RunDir.init refuses a non-empty folder that is not a run ---------------------------
def test_init_refuses_a_non_empty_folder(tmp_path, tiny_preset):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "important.npy").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not empty"):
        RunDir(tmp_path / "ds").init(tiny_preset, data="synth")
    assert not (tmp_path / "ds" / "config.json").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        RunDir(tmp_path / "file").init(tiny_preset, data="synth")
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "empty").init(tiny_preset, data="synth")       # an empty folder is fine


# -- 6. seed, n_train, n_val saved and reused ---------------------------------------------
def test_data_options_are_saved_reused_and_contradictions_refused(tmp_path):
    run = open_run(tmp_path / "run", "synth-nyu", "synth", seed=3, n_train=8)
    assert _cfg(run)["data_options"] == {"seed": 3, "n_train": 8, "n_val": None}
    assert data_options(run) == {"seed": 3, "n_train": 8, "n_val": None}        # resume: reused
    assert data_options(run, seed=3, n_train=8) == {"seed": 3, "n_train": 8, "n_val": None}
    with pytest.raises(ValidationError, match="--n-train 8, not --n-train 16"):
        data_options(run, n_train=16)
    with pytest.raises(ValidationError, match="--seed 3, not --seed 0"):
        open_run(run.path, None, None, seed=0)
    with pytest.raises(ValidationError, match="dataset default, not --n-val 4"):
        open_run(run.path, None, None, n_val=4)


def test_a_run_without_saved_options_records_them_on_first_use(tmp_path, tiny_preset):
    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")                  # e.g. a run made by an older version
    assert "data_options" not in _cfg(run)
    assert data_options(run, n_train=8, n_val=4) == {"seed": 0, "n_train": 8, "n_val": 4}
    assert _cfg(run)["data_options"] == {"seed": 0, "n_train": 8, "n_val": 4}
    assert data_options(run)["n_train"] == 8


# -- 3. counts and intervals >= 1 in the library too ---------------------------------------
@pytest.mark.parametrize("kw, needle", [({"save_every": 0}, "--save-every"), ({"n_train": 0}, "--n-train"),
                                        ({"n_val": 0}, "--n-val")])
def test_library_refuses_zero_counts(tmp_path, tiny_preset, kw, needle):
    from dymu_rt.training.anchor import train_anchor

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    with pytest.raises(ValidationError, match=needle):
        train_anchor(run, progress=False, **kw)


# -- 10. anchor optimizer and schedule ------------------------------------------------------
def test_anchor_optimizer_and_schedule_settings(tiny_preset):
    from dymu_rt.training.common import anchor_lr, make_anchor_optimizer, validate_train_config

    net = torch.nn.Linear(2, 2)
    cfg = tiny_preset.train
    assert (cfg.anchor_optimizer, cfg.anchor_schedule) == ("adamw", "cosine")      # defaults kept
    assert isinstance(make_anchor_optimizer(net.parameters(), cfg), torch.optim.AdamW)
    sgd = tiny_preset.with_train(anchor_optimizer="sgd", anchor_lr=0.1, anchor_weight_decay=0.0).train
    opt = make_anchor_optimizer(net.parameters(), sgd)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.1
    assert isinstance(make_anchor_optimizer(net.parameters(), tiny_preset.with_train(anchor_optimizer="adam").train),
                      torch.optim.Adam)
    step = tiny_preset.with_train(anchor_schedule="step", anchor_steps=100, anchor_decay_every=10,
                                  anchor_decay_gamma=0.5, anchor_lr=1.0).train
    assert [anchor_lr(step, s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    auto = tiny_preset.with_train(anchor_schedule="step", anchor_steps=30, anchor_lr=1.0).train
    assert anchor_lr(auto, 13) == 1.0 and anchor_lr(auto, 14) == pytest.approx(0.3)   # 14/30 of the steps
    for bad in (dict(anchor_optimizer="rmsprop"), dict(anchor_schedule="linear"), dict(anchor_lr=0.0),
                dict(anchor_weight_decay=-1.0), dict(anchor_decay_gamma=0.0), dict(tau=2.0)):
        with pytest.raises(ValidationError):
            validate_train_config(tiny_preset.with_train(**bad).train)


def test_anchor_trains_with_sgd_and_step_schedule(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset.with_train(anchor_optimizer="sgd", anchor_schedule="step", anchor_decay_every=2),
             data="synth")
    train_anchor(run, n_train=4, n_val=2, progress=False, save_every=2, stop_after=2)
    meta = json.loads((run.path / "state" / "anchor.json").read_text())
    assert "momentum" in meta["optimizer"]["param_groups"][0]             # SGD state was saved
    train_anchor(run, n_train=4, n_val=2, progress=False, save_every=2)
    assert run.stage_done("anchor") and run.preset().train.anchor_optimizer == "sgd"


# -- 11. regularizer settings in the saved config ------------------------------------------
def test_regularizer_settings_round_trip_through_the_run_config(tmp_path):
    from dymu_rt.control.regularizer import RegularizerConfig
    from dymu_rt.training.common import regularizer_config

    overrides = {"tau": 0.25, "lambda_active": 0.5, "lambda_inactive": 0.02, "inactive_loss": False,
                 "layer_weighting": False, "use_affinity": False, "dichotomy": False}
    run = open_run(tmp_path / "run", "synth-nyu", "synth", overrides)
    stored = _cfg(run)["preset"]["train"]
    assert {k: stored[k] for k in overrides} == overrides
    # A resumed run (new RunDir, no overrides) keeps them.
    resumed = open_run(tmp_path / "run", None, None)
    assert regularizer_config(resumed.preset().train) == RegularizerConfig(
        lambda_active=0.5, lambda_inactive=0.02, tau=0.25, inactive_loss=False, layer_weighting=False,
        use_affinity=False, dichotomy=False, inactive_detach=True)     # synth presets detach
    # Set later on a run created without them, too.
    other = open_run(tmp_path / "other", "synth-nyu", "synth")
    assert regularizer_config(other.preset().train) == RegularizerConfig(inactive_detach=True, lambda_active=5.0,
                                                                         lambda_inactive=0.02, inactive_loss=False)
    open_run(other.path, None, None, {"tau": 0.3, "use_affinity": False, "inactive_detach": False})
    assert regularizer_config(RunDir(other.path).preset().train) == RegularizerConfig(
        tau=0.3, use_affinity=False, lambda_active=5.0, lambda_inactive=0.02, inactive_loss=False)


@pytest.mark.filterwarnings("error:Converting a tensor with requires_grad")
def test_edge_stage_uses_the_saved_regularizer_and_refuses_changing_it_after(tmp_path, tiny_preset):
    from dymu_rt.training.pipeline import train

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset.with_train(tau=0.3, dichotomy=False, layer_weighting=False), data="synth")
    cfg = train(run, "all", n_train=8, n_val=4, progress=False)
    reg = cfg["stages"]["edge"]["regularizer"]
    assert reg["tau"] == 0.3 and reg["dichotomy"] is False and reg["layer_weighting"] is False
    assert reg["inactive_loss"] is False and reg["use_affinity"] is True     # synth presets: no L_inactive
    with pytest.raises(ValidationError, match="stage 'edge' finished with tau=0.3"):
        open_run(run.path, None, None, {"tau": 0.5})
    open_run(run.path, None, None, {"tau": 0.3})                  # the same value is fine


def test_edge_stage_settings_identity_prior_and_eta_are_validated_used_and_stored(tmp_path, tiny_preset,
                                                                                    monkeypatch):
    from safetensors.torch import load_file as load

    import dymu_rt.training.controller as controller
    from dymu_rt.training.common import validate_train_config

    etas = []
    sample = controller._sample_pref

    shares, cs = [], []

    def spy(rng, n, eta=0.2, device=None, c_zero_share=0.0):
        etas.append(eta)
        shares.append(c_zero_share)
        r, c = sample(rng, n, eta, device, c_zero_share)
        cs.append(float(c))
        return r, c

    monkeypatch.setattr(controller, "_sample_pref", spy)
    from dymu_rt.training.pipeline import train

    for bad, needle in ((dict(identity_prior=-1.0), "identity_prior -1.0"), (dict(identity_prior=True), "identity_prior"),
                        (dict(identity_prior=float("nan")), "identity_prior nan"),
                        (dict(identity_prior_learnable="no"), "identity_prior_learnable 'no'"),
                        (dict(edge_eta=0.0), "edge_eta 0.0"), (dict(edge_eta="1"), "edge_eta '1'"),
                        (dict(edge_hard_gumbel=1), "edge_hard_gumbel 1"),
                        (dict(edge_prefs_per_step=3), "edge_prefs_per_step 3"),      # does not divide 4
                        (dict(edge_prefs_per_step=0), "edge_prefs_per_step 0"),
                        (dict(c_zero_share=1.0), "c_zero_share 1.0"), (dict(c_zero_share=-0.1), "c_zero_share -0.1"),
                        (dict(c_zero_share=True), "c_zero_share True"),
                        (dict(identity_prior_c_slope=1.5), "identity_prior_c_slope 1.5")):
        with pytest.raises(ValidationError, match=needle):
            validate_train_config(tiny_preset.with_train(**bad).train)
    run = RunDir(tmp_path / "run")
    run.init(tiny_preset.with_train(identity_prior=6.0, identity_prior_learnable=False, edge_eta=1.0,
                                    edge_hard_gumbel=True, edge_prefs_per_step=2, c_zero_share=0.5,
                                    identity_prior_c_slope=0.5),
             data="synth")
    mixes = []
    forward_soft = type(run.preset().build()).forward_soft

    def spy_forward(self, x, nu, bn_deltas=None):
        mixes.append((torch.stack(list(nu)).detach(), x.shape[0]))
        return forward_soft(self, x, nu, bn_deltas)

    monkeypatch.setattr(type(run.preset().build()), "forward_soft", spy_forward)
    train(run, "all", n_train=8, n_val=4, progress=False)
    # 4 steps x 2 preferences, each on half of the batch of 4, each a discrete tree.
    assert [b for _, b in mixes] == [2] * 8 and all(set(m.unique().tolist()) <= {0.0, 1.0} for m, _ in mixes)
    prior = load(str(run.module_path("edge_hypernet")))["identity_prior"]
    assert torch.equal(prior[0], 6.0 * torch.eye(3))                      # fixed: untouched by stage 1
    assert etas == [1.0] * 8 + [0.2] * 3                                  # stage 1 at edge_eta, stage 2 at 0.2
    assert shares == [0.5] * 11 and 0 < cs.count(0.0) < 11                # both stages, some c = 0 exactly
    assert RunDir(run.path).load_edge_hypernet().prior_c_slope == 0.5     # the loader rebuilds the run's prior
    stored = _cfg(run)["preset"]["train"]
    assert (stored["identity_prior"], stored["identity_prior_learnable"], stored["edge_eta"]) == (6.0, False, 1.0)
    with pytest.raises(ValidationError, match="stage 'edge' finished with identity_prior=6.0"):
        open_run(run.path, None, None, {"identity_prior": 4.0})
    # A run stored before these settings existed reads as the defaults it was trained with.
    cfg = _cfg(run)
    for k in ("identity_prior", "identity_prior_learnable", "edge_eta", "edge_hard_gumbel", "edge_prefs_per_step",
              "c_zero_share", "identity_prior_c_slope"):
        del cfg["preset"]["train"][k]
    (run.path / "config.json").write_text(json.dumps(cfg))
    t = RunDir(run.path).preset().train
    assert (t.identity_prior, t.identity_prior_learnable, t.edge_eta, t.edge_hard_gumbel,
            t.edge_prefs_per_step, t.c_zero_share, t.identity_prior_c_slope) == (4.0, True, 0.2, False, 1, 0.0, 0.0)


# -- 7. corrupt / edited state files --------------------------------------------------------
@pytest.fixture()
def stopped_anchor(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    train_anchor(run, n_train=4, n_val=2, progress=False, save_every=2, stop_after=2)
    return run


def _resume(run):
    from dymu_rt.training.anchor import train_anchor

    return train_anchor(run, n_train=4, n_val=2, progress=False, save_every=2)


def _state_tensors(run):
    """The tensor file the anchor state JSON commits to."""
    meta = json.loads((run.path / "state" / "anchor.json").read_text())
    return run.path / "state" / meta["tensors"]


def test_truncated_state_file_is_a_checkpoint_error(stopped_anchor):
    path = _state_tensors(stopped_anchor)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        _resume(stopped_anchor)


@pytest.mark.parametrize("edit, needle", [
    ("reshape_model", "has shape"),
    ("drop_model", "does not match the model"),
    ("reshape_opt", "does not match the optimizer"),
    ("bad_opt_index", "unexpected entry"),
    ("bad_rng", "invalid RNG state"),
])
def test_edited_state_tensors_are_a_checkpoint_error(stopped_anchor, edit, needle):
    path = _state_tensors(stopped_anchor)
    t = load_file(str(path))
    model_key = next(k for k in t if k.startswith("model.") and t[k].dim() == 4)
    opt_key = next(k for k in t if k.startswith("opt.") and t[k].dim() == 4)
    if edit == "reshape_model":
        t[model_key] = torch.zeros(1, 1, 1, 1)
    elif edit == "drop_model":
        del t[model_key]
    elif edit == "reshape_opt":
        t[opt_key] = torch.zeros(2, 2, 2, 2)
    elif edit == "bad_opt_index":
        t["opt.99999.exp_avg"] = torch.zeros(1)
    else:
        t["rng.torch"] = torch.zeros(3, dtype=torch.float32)
    save_file(t, str(path))
    with pytest.raises(CheckpointError, match=needle):
        _resume(stopped_anchor)


@pytest.mark.parametrize("edit", ["no_groups", "no_step", "wrong_group_count"])
def test_edited_state_json_is_a_checkpoint_error(stopped_anchor, edit):
    path = stopped_anchor.path / "state" / "anchor.json"
    meta = json.loads(path.read_text())
    if edit == "no_groups":
        del meta["optimizer"]["param_groups"]
    elif edit == "no_step":
        del meta["step"]
    else:
        meta["optimizer"]["param_groups"].append(meta["optimizer"]["param_groups"][0])
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        _resume(stopped_anchor)


def test_controller_state_with_bad_rng_is_a_checkpoint_error(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor
    from dymu_rt.training.controller import train_edge

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    train_anchor(run, n_train=4, n_val=2, progress=False)
    train_edge(run, n_train=4, n_val=2, progress=False, save_every=2, stop_after=2)
    path = run.path / "state" / "edge.json"
    meta = json.loads(path.read_text())
    meta["np_rng"] = {"nonsense": 1}
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="numpy RNG state"):
        train_edge(run, n_train=4, n_val=2, progress=False, save_every=2)


# -- 9. trivial baselines from the un-augmented training split ------------------------------
def test_anchor_baselines_use_the_unaugmented_training_split(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor
    from dymu_rt.training.common import make_split, make_tasks
    from dymu_rt.training.evaluation import trivial_baselines

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    summary = train_anchor(run, n_train=8, n_val=4, progress=False)
    tasks = make_tasks(tiny_preset)
    clean = make_split(tiny_preset, "synth", "train", n=8, augment=False)
    val = make_split(tiny_preset, "synth", "val", n=4)
    expected = trivial_baselines(tasks, clean, val)
    assert summary["baselines"]["depth"] == pytest.approx(expected["depth"])
    assert summary["baselines"]["normals"] == pytest.approx(expected["normals"])


def test_constant_depth_is_the_mean_over_up_to_256_samples(tiny_preset):
    from dymu_rt.training.common import make_split, make_tasks
    from dymu_rt.training.evaluation import _constant_output, _stat_indices

    assert _stat_indices(10, 256) == list(range(10))
    idx = _stat_indices(1000, 256)
    assert len(idx) == 256 and idx[0] == 0 and idx[-1] == 999
    depth = next(t for t in make_tasks(tiny_preset) if t.kind == "depth")
    ds = make_split(tiny_preset, "synth", "train", n=6, augment=False)
    vals = torch.cat([ds[i]["targets"]["depth"][0][ds[i]["masks"]["depth"]] for i in range(6)])
    assert _constant_output(depth, ds).item() == pytest.approx(vals.double().mean().item(), rel=1e-5)


@pytest.mark.parametrize("name", ["nyuv2", "pascal3", "pascal5"])
def test_paper_presets_default_to_the_papers_schedule(name):
    """Adam 1e-3, ×0.3 every 14K steps, 30K steps, for the anchor and both controller stages."""
    from dymu_rt.models.presets import get_preset
    from dymu_rt.training.common import anchor_lr, step_decay_lr

    cfg = get_preset(name).train
    assert cfg.anchor_optimizer == "adam" and cfg.anchor_steps == cfg.edge_steps == cfg.weight_steps == 30000
    for lr in (lambda s: anchor_lr(cfg, s), lambda s: step_decay_lr(cfg.controller_lr, s, cfg.decay_every,
                                                                      cfg.decay_gamma)):
        assert [round(lr(s), 8) for s in (0, 13999, 14000, 27999, 28000, 29999)] == \
            [1e-3, 1e-3, 3e-4, 3e-4, 9e-5, 9e-5]
