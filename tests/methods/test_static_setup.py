"""AdaShare and DAG runs on DYMU's training setup: device, precision, channels-last, workers,
and mid-stage resume (every --save-every steps) equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from dymu_rt.methods import get_method
from dymu_rt.training import static
from dymu_rt.training.adashare import train_adashare
from dymu_rt.run.layout import RunDir
from dymu_rt.training.dag import train_dag
from dymu_rt.training.device import DeviceSetup
from dymu_rt.training.setup import TrainSetup

TRAINERS = {"adashare": train_adashare, "dag": train_dag}
STEPS = {"anchor_steps": 4, "edge_steps": 4, "weight_steps": 4, "anchor_batch": 4}

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (this machine has none; run through the device tool)")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


class Killed(Exception):
    """Raised from on_step: the run dies right after that step (and its save, if any)."""


def _run(tmp_path, preset, method: str, name: str, steps: dict = STEPS, **config) -> RunDir:
    run = RunDir(tmp_path / name)
    extra = get_method(method).new_run_extra(preset, steps, 2 if method == "dag" else None)
    extra["method_config"].update(config)
    run.init(preset, data="synth", extra={"data_options": {"seed": 0, "n_train": 16, "n_val": 4}, **extra})
    return run


def _train(run: RunDir, method: str, setup=None, on_step=None, save_every: int = 2) -> dict:
    return TRAINERS[method](run, "synth", 0, 16, 4, progress=False, save_every=save_every, setup=setup,
                            on_step=on_step)


def _kill_at(stage: str, step: int):
    def hook(s: str, k: int) -> None:
        if (s, k) == (stage, step):
            raise Killed(f"{s} {k}")
    return hook


@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_a_run_killed_in_every_stage_resumes_to_the_uninterrupted_result(tmp_path, tiny_preset, method):
    # 12 steps a stage, saved every 8, logged every 10, killed after step 11: the resume
    # restarts at 8 and must drop the record of step 10 before logging it again.
    steps = {**STEPS, "anchor_steps": 12, "edge_steps": 12, "weight_steps": 12}
    whole = _run(tmp_path, tiny_preset, method, "whole", steps)
    _train(whole, method, save_every=8)
    parts = _run(tmp_path, tiny_preset, method, "parts", steps)
    for stage in static.STATIC_STAGES:
        with pytest.raises(Killed):
            _train(parts, method, on_step=_kill_at(stage, 11), save_every=8)
        meta = json.loads((parts.path / "state" / f"{stage}-progress.json").read_text())
        assert meta["step"] == 8 and (parts.path / "state" / meta["tensors"]).is_file()
        assert not parts.stage_done(stage)
        if method == "adashare" and stage == "search":
            # τ and the curriculum are functions of the step: stored for the record.
            assert meta["tau"] < 5.0 and meta["open"] >= 1 and set(meta["optimizer"]) == {"w", "policy"}
        if method == "dag" and stage == "search":
            assert set(meta["optimizer"]) == {"opt", "upper"}
    _train(parts, method, save_every=8)
    a, b = load_file(str(whole.module_path("model"))), load_file(str(parts.module_path("model")))
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    print(f"{method}: killed in every stage and resumed vs uninterrupted, max |dw| = {worst:.3g}")
    assert worst <= 1e-6, f"resumed run differs from the uninterrupted one by {worst}"
    ca, cb = whole.read_config()["stages"], parts.read_config()["stages"]
    decision = "policy" if method == "adashare" else "masks"
    assert ca["search"][decision] == cb["search"][decision]
    for task, metrics in ca["final"]["val"].items():
        assert metrics == pytest.approx(cb["final"]["val"][task], abs=1e-6)
    # Each finished stage removed its progress state; the logs hold each step once.
    assert not list((parts.path / "state").glob("*-progress*"))
    log = [json.loads(l) for l in (parts.path / "logs" / f"{method}.jsonl").read_text().splitlines()]
    keys = [(r["stage"], r["step"]) for r in log]
    assert len(keys) == len(set(keys)) == 3 and all(step == 10 for _, step in keys)


def test_a_mid_stage_state_that_does_not_fit_is_one_clear_error(tmp_path, tiny_preset):
    from dymu_rt.core.errors import CheckpointError

    run = _run(tmp_path, tiny_preset, "dag", "r")
    with pytest.raises(Killed):
        _train(run, "dag", on_step=_kill_at("search", 3))
    path = run.path / "state" / "search-progress.json"
    meta = json.loads(path.read_text())
    del meta["optimizer"]["upper"]
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no state of optimizer 'upper'"):
        _train(run, "dag")


@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_bf16_channels_last_and_a_worker_on_cpu(tmp_path, tiny_preset, method):
    run = _run(tmp_path, tiny_preset, method, "r", {**STEPS, "anchor_steps": 2, "edge_steps": 2, "weight_steps": 2})
    setup = TrainSetup(DeviceSetup(torch.device("cpu"), "bf16", channels_last=True), workers=1)
    cfg = _train(run, method, setup=setup)
    used = cfg["stages"]["final"]["trained_with"]
    assert used["precision"] == "bf16" and used["channels_last"] and used["workers"] == 1
    _, net, _, _ = get_method(method).load(run)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in cfg["stages"]["final"]["val"].values())


def test_explicit_cpu_through_run_training_is_recorded(tmp_path, tiny_preset):
    from dymu_rt.methods import run_training

    run = _run(tmp_path, tiny_preset, "dag", "r", {**STEPS, "anchor_steps": 1, "edge_steps": 1, "weight_steps": 1})
    cfg = run_training(run.path, "all", progress=False, method="dag", device="cpu", save_every=1)
    assert cfg["train_setup"]["device"] == "cpu" and cfg["stages"]["final"]["trained_with"]["device"] == "cpu"


def _torchrun(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "dymu_rt.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_two_processes_train_the_same_static_run_as_one(tmp_path, tiny_preset, method):
    """torchrun (gloo, CPU), --sync-bn: 2 ranks x half the batch = 1 process x the batch, up to
    float summation order (1e-5, as DYMU's DDP tests). Θ trains with SGD at lr 0.002 in every
    stage (AdaShare's search too): tests/train/test_distributed.py says why (Adam on Θ, or
    lr 0.01 on this toy, turns float noise into 1e-4 drifts between any two summation orders).

    AdaShare's search runs one step here. Its policy gradient on this toy is a sum that
    cancels to a few % of its terms: one process at 1 thread and at 2 threads already give
    raw policy gradients 7e-3 apart on values of 2e-2 by the third step (the same gap as 2
    ranks vs 1), so more search steps would compare float noise, not the data parallelism."""
    preset = tiny_preset.with_train(anchor_optimizer="sgd", anchor_lr=0.002)
    steps = {**STEPS, "anchor_steps": 3, "edge_steps": 3 if method == "dag" else 1, "weight_steps": 3}
    config = {"weight_lr": 0.002} if method == "adashare" else {}
    one = _run(tmp_path, preset, method, "one", steps, **config)
    _train(one, method)
    two = _run(tmp_path, preset, method, "two", steps, **config)
    _torchrun(["train", "--method", method, "--out", str(two.path), "--device", "cpu", "--sync-bn", "--quiet"])
    a, b = load_file(str(one.module_path("model"))), load_file(str(two.module_path("model")))
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())
    print(f"{method}: 2 ranks vs 1, max |dw| = {worst:.3g}")
    assert worst < 1e-5
    cfg = two.read_config()
    decision = "policy" if method == "adashare" else "masks"
    assert cfg["stages"]["search"][decision] == one.read_config()["stages"]["search"][decision]
    used = cfg["stages"]["final"]["trained_with"]
    assert used["world_size"] == 2 and used["backend"] == "gloo" and used["sync_bn"] is True


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True, timeout=300)


@no_cuda
@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_cli_refuses_a_missing_gpu_before_writing_anything(tmp_path, method):
    p = _cli("train", "--method", method, "--preset", "synth-nyu", "--out", str(tmp_path / "r"), "--device", "cuda",
             "--quiet")
    assert p.returncode == 2 and p.stderr.startswith("error: --device cuda: this machine has no CUDA device")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_cli_refuses_fp16_on_cpu_like_dymu(tmp_path):
    p = _cli("train", "--method", "dag", "--preset", "synth-nyu", "--out", str(tmp_path / "r"), "--device", "cpu",
             "--precision", "fp16", "--quiet")
    assert p.returncode == 2 and p.stderr.startswith("error: --precision fp16 needs a CUDA device")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


# -- GPU (run through the device tool where a GPU is lent) ------------------------------------
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_two_steps_per_stage_on_the_gpu_load_on_the_cpu(tmp_path, tiny_preset, method, precision):
    run = _run(tmp_path, tiny_preset, method, "r", {**STEPS, "anchor_steps": 2, "edge_steps": 2, "weight_steps": 2})
    setup = TrainSetup(DeviceSetup.create("cuda", precision, channels_last=True))
    # Killed after the search's first step: its saved state holds CPU tensors (the fp16
    # loss scale with it) and the run resumes from it on the GPU.
    with pytest.raises(Killed):
        _train(run, method, setup=setup, save_every=1, on_step=_kill_at("search", 1))
    meta = json.loads((run.path / "state" / "search-progress.json").read_text())
    assert (meta["scaler"] is not None) == (precision == "fp16")
    state = load_file(str(run.path / "state" / meta["tensors"]), device="cpu")
    assert all(t.device.type == "cpu" and (not t.is_floating_point() or torch.isfinite(t).all())
               for t in state.values())
    cfg = _train(run, method, setup=setup)
    assert cfg["stages"]["final"]["trained_with"]["device"].startswith("cuda")
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in cfg["stages"]["final"]["val"].values())
    _, net, _, _ = get_method(method).load(run)            # builds on the CPU, loads the GPU run's weights
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in net.parameters())
