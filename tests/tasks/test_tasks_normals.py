"""Surface normals: 1 - cos loss on normalized predictions, angle statistics."""

import math

import numpy as np
import pytest
import torch

from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def test_loss_hand_example_normalizes_and_skips_invalid():
    task = make_task("normals", "normals")
    # pixel 0: same direction, twice as long -> 0; pixel 1: orthogonal -> 1;
    # pixel 2: target 0-vector (invalid); pixel 3: opposite but masked out.
    pred = torch.tensor([[2.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]]).T.reshape(1, 3, 1, 4)
    target = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 0], [1.0, 0, 0]]).T.reshape(1, 3, 1, 4)
    mask = torch.tensor([[[True, True, True, False]]])
    assert task.loss(pred, target, mask).item() == pytest.approx(0.5)
    assert task.loss(pred, target, None).item() == pytest.approx((0 + 1 + 2) / 3)


def test_empty_batch_gives_zero_loss_connected_to_graph():
    task = make_task("normals", "normals")
    pred = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = task.loss(pred, torch.zeros(1, 3, 2, 2), None)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_angle_metrics_match_numpy():
    task = make_task("normals", "normals")
    g = torch.Generator().manual_seed(0)
    target = torch.nn.functional.normalize(torch.randn(4, 3, 6, 7, generator=g), dim=1)
    target[0, :, 0, 0] = 0.0
    pred = target + 0.6 * torch.randn(4, 3, 6, 7, generator=g)
    mask = torch.rand(4, 6, 7, generator=g) > 0.1
    meter = task.new_meter()
    for b in range(4):
        meter.update(pred[b:b + 1], target[b:b + 1], mask[b:b + 1])
    res = meter.compute()

    p = pred.permute(0, 2, 3, 1).numpy().astype(np.float64)
    t = target.permute(0, 2, 3, 1).numpy().astype(np.float64)
    v = mask.numpy() & (np.linalg.norm(t, axis=-1) > 0)
    p, t = p[v], t[v]
    cos = (p * t).sum(-1) / np.linalg.norm(p, axis=-1) / np.linalg.norm(t, axis=-1)
    deg = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert res["mean"] == pytest.approx(deg.mean(), rel=1e-9)
    assert res["median"] == pytest.approx(np.median(deg), abs=0.01)   # 0.01° histogram
    for key, thr in (("within_11_25", 11.25), ("within_22_5", 22.5), ("within_30", 30.0)):
        assert res[key] == pytest.approx(100 * (deg < thr).mean(), rel=1e-9)
    assert 0 < res["within_11_25"] < res["within_22_5"] < res["within_30"] < 100


def test_postprocess_unit_vectors_and_picture_colors():
    task = make_task("normals", "normals")
    out = np.zeros((3, 1, 3), dtype=np.float32)
    out[:, 0, 0] = (0, 0, -5.0)     # towards the camera
    out[:, 0, 1] = (3.0, 4.0, 0)
    post = task.postprocess(out)
    np.testing.assert_allclose(post[:, 0, 0], (0, 0, -1))
    np.testing.assert_allclose(post[:, 0, 1], (0.6, 0.8, 0))
    img = np.asarray(task.visualize(post))
    assert img[0, 0].tolist() == [128, 128, 0]      # (n + 1) / 2 * 255, rounded
    assert img[0, 2].tolist() == [0, 0, 0]          # 0-vector (invalid) is black
    assert math.isnan(task.new_meter().compute()["median"])


def test_exactly_zero_prediction_has_finite_gradient():
    # A zero-initialized head outputs 0-vectors: the direction is undefined but nothing may be NaN.
    task = make_task("normals", "normals")
    pred = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.nn.functional.normalize(torch.ones(1, 3, 2, 2), dim=1)
    loss = task.loss(pred, target)
    loss.backward()
    assert loss.item() == pytest.approx(1.0) and torch.isfinite(pred.grad).all()
