"""torchrun data parallelism on CPU (gloo): 2 processes = 1 process with the same global batch.

What is compared, and why it can be equal: the global batch of every step is split in two
contiguous halves, DDP averages the two gradients, and every task loss is a per-pixel mean
over equal-sized halves whose pixels are all labelled (procedural scenes), so the mean of
the two half-batch losses is the full-batch loss. The anchor stage trains BN in training
mode, so it runs with --sync-bn (global-batch statistics); stage 1 runs a frozen anchor
(BN in eval mode) and draws the same (r, c) and Gumbel noise on every rank. What remains
is float summation order: the tolerance is 1e-5 on every weight.

The anchor runs use SGD (momentum 0.9), not the preset's AdamW: some anchor parameters
have an analytically zero gradient (the bias of the ASPP image-pooling conv, which feeds a
batch-normalized projection), and Adam divides their ~1e-9 float noise by its own
magnitude, turning it into ±lr steps on any two implementations (it does so between two
single-process runs that sum in another order as well). And the step is small (SGD lr
0.002): at lr 0.01 this 32x32 toy's training is already chaotic, and one process with 1
thread and with 2 threads drifts apart by ~1e-4 within 4 steps, exactly as much as 1 vs 2
ranks do; at 0.002 both stay at ~2e-7. The controller stages keep their Adam.

These tests launch the real CLI under ``python -m torch.distributed.run --standalone``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dymu_rt.run.layout import RunDir

TOL = 1e-5


def _cli_module() -> str:
    """The CLI's module: dymu_rt.cli once it is a package with __main__, else cli.main."""
    if importlib.util.find_spec("dymu_rt.cli") is not None and \
            importlib.util.find_spec("dymu_rt.cli.__main__") is not None:
        return "dymu_rt.cli"
    return "cli.main"


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", _cli_module(), *args]


def _launch(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(_torchrun(args), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def _max_diff(a: Path, b: Path) -> float:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert set(ta) == set(tb)
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta if ta[k].numel())


def _new_run(path: Path, preset) -> RunDir:
    preset = preset.with_train(anchor_optimizer="sgd", anchor_lr=0.002)
    run = RunDir(path)
    run.init(preset, data="synth", extra={"data_options": {"seed": 3, "n_train": 8, "n_val": 4}})
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_preset):
    """One process, all stages (global batch 4, seed 3): the run every 2-process run must match."""
    from dymu_rt.training.pipeline import train

    run = _new_run(tmp_path_factory.mktemp("ref") / "run", tiny_preset)
    train(run, "all", progress=False)
    return run


def test_two_processes_train_the_same_anchor_as_one_with_sync_bn(tmp_path, tiny_preset):
    """One step of the shared pre-training and one of the anchor (the stages' DDP wrappers,
    sync BN and the split of the global batch), 2 ranks against 1 process. One step each, not
    the preset's 4: on an AVX-512 CPU (torch 2.13) this toy's SGD amplifies float summation
    order ~100x per step (measured 2 ranks vs 1: 5e-7 after one anchor step, 6e-5 after two,
    1.5e-3 after four), so only the first steps can be compared at float tolerance. A rank
    that saw other data or skipped the gradient average is off by far more than TOL after one."""
    from dymu_rt.training.pipeline import train

    preset = tiny_preset.with_train(anchor_steps=1, anchor_pretrain_steps=1)
    ref = _new_run(tmp_path / "ref", preset)
    train(ref, "anchor", progress=False)
    run = _new_run(tmp_path / "ddp", preset)
    _launch(["train", "anchor", "--out", str(run.path), "--device", "cpu", "--sync-bn", "--quiet"])
    assert json.loads(run.config_path.read_text())["stages"]["anchor-pretrain"]["done"]
    err = _max_diff(run.module_path("anchor"), ref.module_path("anchor"))
    print(f"anchor stage, 2 ranks vs 1, max |Δw| = {err:.3g}")
    assert err < TOL
    cfg = json.loads(run.config_path.read_text())
    used = cfg["stages"]["anchor"]["trained_with"]
    assert used["world_size"] == 2 and used["backend"] == "gloo" and used["sync_bn"] is True
    assert cfg["train_setup"]["sync_bn"] is True and cfg["train_setup"]["device"] == "cpu"
    # Only rank 0 wrote: one log line per logged step, no duplicates.
    steps = [json.loads(l)["step"] for l in (run.path / "logs" / "anchor.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_two_processes_train_the_same_controller_as_one(tmp_path, reference):
    """Stage 1 (edge hypernet + regularizer) and stage 2 from the reference's anchor."""
    dst = tmp_path / "ddp"
    dst.mkdir()
    shutil.copy(reference.config_path, dst / "config.json")
    shutil.copy(reference.module_path("anchor"), dst / "anchor.safetensors")
    cfg = json.loads((dst / "config.json").read_text())
    for stage in ("edge", "weight"):
        cfg["stages"][stage] = {"done": False}
    (dst / "config.json").write_text(json.dumps(cfg))
    _launch(["train", "controller", "--out", str(dst), "--device", "cpu", "--workers", "1", "--quiet"])
    run = RunDir(dst)
    edge = _max_diff(run.module_path("edge_hypernet"), reference.module_path("edge_hypernet"))
    weight = _max_diff(run.module_path("weight_hypernet"), reference.module_path("weight_hypernet"))
    print(f"stage 1 max |Δw| = {edge:.3g}, stage 2 max |Δw| = {weight:.3g}")
    assert edge < TOL and weight < TOL


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_a_killed_two_process_run_resumes_and_ends_like_an_unkilled_one(tmp_path, tiny_preset):
    """Kill one rank mid-stage (SIGKILL), rerun the same torchrun command: it resumes from
    the last committed state and ends bitwise where an unkilled 2-process run ends.

    (Compared with a 2-process run, not with one process: over 16 steps, float-noise-level
    differences grow (the depth task's L1 loss has a sign gradient, so a 1e-7 change flips
    some pixels' gradients), which the 4-step 1-vs-2-process test above stays clear of.)
    """
    preset = tiny_preset.with_train(anchor_steps=16)
    args = ["train", "anchor", "--device", "cpu", "--sync-bn", "--workers", "1", "--save-every", "2", "--quiet"]
    ref = _new_run(tmp_path / "unkilled", preset)
    _launch([*args, "--out", str(ref.path)])

    run = _new_run(tmp_path / "killed", preset)
    proc = subprocess.Popen(_torchrun([*args, "--out", str(run.path)]), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    state = run.path / "state" / "anchor.json"
    killed_at = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            step = json.loads(state.read_text())["step"] if state.is_file() else 0
        except (OSError, json.JSONDecodeError, KeyError):
            step = 0
        if step >= 4:
            # Kill one rank (SIGKILL: no clean-up); torchrun then stops the other.
            ranks = _children(proc.pid)
            assert ranks, "no rank processes found under torchrun"
            os.kill(ranks[-1], signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=120)
    assert killed_at is not None, "the run ended before it could be killed:\n" + out[-2000:]
    assert proc.returncode != 0
    assert not run.stage_done("anchor")
    # Whatever instant the kill hit, the committed state is whole and names its tensors.
    meta = json.loads(state.read_text())
    assert (run.path / "state" / meta["tensors"]).is_file() and 4 <= meta["step"] < 16
    left = sorted(p.name for p in (run.path / "state").iterdir() if not p.name.startswith("."))
    assert left[0] == "anchor.json" and meta["tensors"] in left

    _launch([*args, "--out", str(run.path)])
    assert run.stage_done("anchor")
    err = _max_diff(run.module_path("anchor"), ref.module_path("anchor"))
    print(f"killed at step {meta['step']}, resumed: max |Δw| vs the unkilled 2-process run = {err:.3g}")
    assert err == 0.0
    logged = [json.loads(l)["step"] for l in (run.path / "logs" / "anchor.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))


def test_rank_zero_errors_stop_every_rank_with_one_clear_line(tmp_path):
    p = subprocess.run(_torchrun(["train", "anchor", "--out", str(tmp_path / "r"), "--preset", "nope",
                                  "--device", "cpu", "--quiet"]),
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "error: unknown preset 'nope'" in p.stderr
    assert "error: rank 0: unknown preset 'nope'" in p.stderr
    # torchrun prints its own ChildFailedError report; no frame of ours may be in it.
    assert "dymu_rt/" not in p.stderr and "cli/commands" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_a_global_batch_that_does_not_split_is_refused_before_training(tmp_path, tiny_preset):
    """Every stage checks that the ranks divide --batch before it builds anything."""
    from dymu_rt.core.errors import ValidationError
    from dymu_rt.training.anchor import train_anchor
    from dymu_rt.training.distributed import Distributed
    from dymu_rt.training.setup import TrainSetup

    run = _new_run(tmp_path / "odd", tiny_preset.with_train(anchor_batch=3))
    two_ranks = TrainSetup(dist=Distributed(rank=0, world_size=2))     # no process group needed to refuse
    with pytest.raises(ValidationError, match="--batch 3 does not split over 2 processes; give a multiple of 2"):
        train_anchor(run, n_train=8, n_val=4, progress=False, setup=two_ranks)
    assert not (run.path / "state").exists()
