"""The fp16 loss-scaler path of every trainer's step (``backward_step``), on the CPU: the
GPU tests were its only users, so a scaler that never unscales, never skips an inf step
or loses its state on resume shipped green on CPU CI (issue 28). torch's GradScaler runs on
the CPU when enabled explicitly; the trainers' own code path is the same. < 1 s."""

from __future__ import annotations

import json

import pytest
import torch

from dymu_rt.training.setup import backward_step, restore_scaler, scaler_meta


def _scaler(**kw):
    try:
        return torch.amp.GradScaler("cpu", enabled=True, **kw)
    except (RuntimeError, TypeError) as e:          # pragma: no cover - old torch
        pytest.skip(f"this torch has no CPU GradScaler ({e})")


def test_a_scaled_step_equals_the_unscaled_one():
    x = torch.tensor([1.0, -2.0, 3.0])
    w = torch.nn.Parameter(torch.tensor([0.5, 0.5, 0.5]))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler = _scaler(init_scale=2.0 ** 16)
    backward_step((w * x).sum(), opt, scaler)
    # d/dw (w·x) = x: one SGD step of the *unscaled* gradient
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, 0.5, 0.5]) - 0.1 * x)
    assert w.grad is not None and torch.allclose(w.grad, x)       # unscaled before the step


def test_an_inf_gradient_skips_every_optimizer_and_backs_off():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opts = [torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)]
    scaler = _scaler(init_scale=1024.0, backoff_factor=0.5)
    loss = a.sum() + b.sum() * torch.tensor(float("inf"))
    backward_step(loss, opts, scaler)
    assert torch.equal(a.detach(), torch.ones(2)) and torch.equal(b.detach(), torch.ones(2))
    assert scaler.get_scale() == 512.0
    backward_step(a.sum() + b.sum(), opts, scaler)                 # a finite step goes through
    assert torch.allclose(a.detach(), torch.full((2,), 0.9)) and torch.allclose(b.detach(), torch.full((2,), 0.9))


def test_scaler_state_survives_a_json_round_trip():
    scaler = _scaler(init_scale=256.0, growth_interval=3)
    w = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([w], lr=0.01)
    for _ in range(4):                                             # grows once (3 finite steps), then 1
        backward_step(w.sum(), opt, scaler)
    meta = json.loads(json.dumps(scaler_meta(scaler)))             # what the run's state JSON holds
    assert meta["scale"] == 512.0 and meta["_growth_tracker"] == 1
    fresh = _scaler(init_scale=1.0, growth_interval=3)
    restore_scaler(fresh, meta)
    assert fresh.get_scale() == 512.0 and fresh.state_dict()["_growth_tracker"] == 1
    # fp32/bf16 runs have no scaler state; restoring into a disabled scaler is a no-op
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert scaler_meta(off) is None
    restore_scaler(off, meta)
    assert not off.is_enabled()
