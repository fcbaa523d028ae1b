"""Checkpoints: safetensors round trip, mismatch refused, corrupt file refused, optimizer state."""

import pytest
import torch

from dymu_rt.core.errors import CheckpointError
from dymu_rt.run.layout import (RunDir, load_module, optimizer_tensors, restore_optimizer,
                                save_module)


def test_round_trip_is_exact(tmp_path, tiny_preset):
    a = tiny_preset.build()
    save_module(a, tmp_path / "a.safetensors")
    b = tiny_preset.build()
    load_module(b, tmp_path / "a.safetensors", "anchor checkpoint")
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_mismatched_checkpoint_refused(tmp_path, tiny_preset):
    import dataclasses

    other = dataclasses.replace(tiny_preset, backbone=dataclasses.replace(tiny_preset.backbone, width_mult=0.25))
    save_module(other.build(), tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="has shape"):
        load_module(tiny_preset.build(), tmp_path / "a.safetensors", "anchor checkpoint")


def test_corrupt_and_missing_checkpoints_refused(tmp_path, tiny_preset):
    path = tmp_path / "a.safetensors"
    save_module(tiny_preset.build(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_module(tiny_preset.build(), path, "anchor checkpoint")
    with pytest.raises(CheckpointError, match="not found"):
        load_module(tiny_preset.build(), tmp_path / "nope.safetensors", "anchor checkpoint")


def test_run_dir_refuses_other_preset_and_non_runs(tmp_path, tiny_preset):
    from dymu_rt.models.presets import get_preset

    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth")
    with pytest.raises(CheckpointError, match="holds a run of preset"):
        run.init(get_preset("cifar100"), data="synth")
    with pytest.raises(CheckpointError, match="not a dymu-rt run"):
        RunDir(tmp_path).read_config()


def test_optimizer_state_round_trip(tiny_preset):
    net = tiny_preset.build()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    out = net(torch.rand(2, 3, 32, 32))
    sum(o.mean() for o in out.values()).backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    opt2 = torch.optim.Adam(net.parameters(), lr=1e-3)
    restore_optimizer(opt2, tensors, meta)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"])
        assert float(s1[k]["step"]) == float(s2[k]["step"])
