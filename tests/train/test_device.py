"""Device, precision and setup options: validated, recorded in the run, reused on resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.run.layout import RunDir
from dymu_rt.training.device import DeviceSetup, check_precision, resolve_device
from dymu_rt.training.setup import TrainSetup

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (this machine has none; run through the device tool)")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu:0", ""])
def test_bad_device_names_are_refused(spec):
    with pytest.raises(ValidationError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@no_cuda
def test_cuda_on_a_machine_without_it_is_one_clear_error():
    with pytest.raises(ValidationError, match="no CUDA device"):
        resolve_device("cuda:0")


def test_precision_is_validated():
    with pytest.raises(ValidationError, match="expected one of fp32, bf16, fp16"):
        check_precision("fp8", torch.device("cpu"))
    with pytest.raises(ValidationError, match="fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    assert check_precision(None, torch.device("cpu")) == "fp32"


def _run(tmp_path, preset, name="run"):
    run = RunDir(tmp_path / name)
    run.init(preset, data="synth", extra={"data_options": {"seed": 0, "n_train": 8, "n_val": 4}})
    return run


def test_bf16_autocast_trains_the_anchor_on_cpu_with_fp32_weights(tmp_path, tiny_preset):
    from dymu_rt.training.anchor import train_anchor

    run = _run(tmp_path, tiny_preset.with_train(anchor_steps=2))
    setup = TrainSetup(DeviceSetup(torch.device("cpu"), "bf16", channels_last=True))
    res = train_anchor(run, n_train=8, n_val=4, progress=False, setup=setup)
    assert res["trained_with"]["precision"] == "bf16" and res["trained_with"]["channels_last"]
    anchor = run.load_anchor()
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in anchor.parameters())
    # The weights moved from the trainer's own seeded start (seed 0, then build), not just
    # from some other random init.
    from dymu_rt.training.common import seed_everything

    seed_everything(0)
    fresh = tiny_preset.with_train(anchor_steps=2).build()
    moved = max(float((a - b).abs().max()) for a, b in zip(anchor.parameters(), fresh.parameters()))
    assert moved > 1e-5, "bf16 training did not move the weights from their seeded start"


def test_setup_options_are_recorded_and_reused_on_resume(tmp_path, tiny_preset):
    from dymu_rt.training.pipeline import run_training, setup_options

    run = _run(tmp_path, tiny_preset.with_train(anchor_steps=2))
    run_training(run.path, "anchor", progress=False, device="cpu", precision="bf16", workers=1)
    saved = json.loads(run.config_path.read_text())["train_setup"]
    assert saved == {"device": "cpu", "precision": "bf16", "channels_last": False, "workers": 1, "sync_bn": False}
    assert setup_options(run.path) == saved                               # omitted: reused
    assert setup_options(run.path, precision="fp32")["precision"] == "fp32"   # given: a resume may change it


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True, timeout=300)


@no_cuda
def test_cli_refuses_a_missing_gpu_before_writing_anything(tmp_path):
    p = _cli("train", "anchor", "--preset", "synth-nyu", "--out", str(tmp_path / "r"), "--device", "cuda")
    assert p.returncode == 2 and p.stderr.startswith("error: --device cuda: this machine has no CUDA device")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_cli_refuses_negative_workers(tmp_path):
    p = _cli("train", "anchor", "--preset", "synth-nyu", "--out", str(tmp_path / "r"), "--workers", "-1")
    assert p.returncode == 2 and "error: --workers -1 is not valid; expected >= 0" in p.stderr
    assert not (tmp_path / "r").exists()


# -- GPU (run through the device tool where a GPU is lent) ------------------------------------
@pytest.mark.gpu
@needs_cuda
def test_auto_picks_the_gpu():
    dev = DeviceSetup.create("auto")
    assert dev.device.type == "cuda" and dev.to_dict()["device_name"]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_anchor_and_stage_1_steps_on_the_gpu(tmp_path, tiny_preset, precision):
    from dymu_rt.training.anchor import train_anchor
    from dymu_rt.training.controller import train_edge

    run = _run(tmp_path, tiny_preset.with_train(anchor_steps=4, edge_steps=4))
    setup = TrainSetup(DeviceSetup.create("cuda", precision, channels_last=True))
    # Stop after 2 steps and resume: the fp16 loss scale comes back with the state.
    assert train_anchor(run, n_train=8, n_val=4, progress=False, save_every=2, stop_after=2,
                        setup=setup) == {"done": False, "step": 2}
    meta = json.loads((run.path / "state" / "anchor.json").read_text())
    assert (meta["scaler"] is not None) == (precision == "fp16")
    res = train_anchor(run, n_train=8, n_val=4, progress=False, setup=setup)
    assert res["trained_with"]["device"].startswith("cuda") and res["trained_with"]["precision"] == precision
    assert all(torch.isfinite(p).all() for p in run.load_anchor().parameters())
    edge = train_edge(run, n_train=8, n_val=4, progress=False, setup=setup)
    assert edge["done"] and (run.path / "affinity.json").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs for a 2-rank NCCL run")
def test_two_step_ddp_on_two_gpus(tmp_path, tiny_preset):
    import os

    run = _run(tmp_path, tiny_preset.with_train(anchor_steps=2))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "dymu_rt.cli", "train", "anchor", "--out", str(run.path), "--device", "cuda",
                        "--precision", "bf16", "--sync-bn", "--quiet"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    used = json.loads(run.config_path.read_text())["stages"]["anchor"]["trained_with"]
    assert used["world_size"] == 2 and used["backend"] == "nccl"
