"""Depth: masked L1 and the abs/rel/RMSE/δ<1.25 metrics, pictures with fixed or per-image range."""

import math

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def test_loss_is_l1_over_valid_pixels_only():
    task = make_task("depth", "depth")
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    target = torch.tensor([1.5, 0.0, 2.0, 4.0]).view(1, 1, 1, 4)   # 0 = missing reading
    mask = torch.tensor([[[True, True, True, False]]])
    # Valid: pixels 0 and 2 -> (0.5 + 1.0) / 2.
    assert task.loss(pred, target, mask).item() == pytest.approx(0.75)


def test_empty_batch_gives_zero_loss_connected_to_graph():
    task = make_task("depth", "depth")
    pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = task.loss(pred, torch.zeros(2, 1, 3, 3), None)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_metrics_match_numpy():
    task = make_task("depth", "depth")
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 5, 6, generator=g) * 5 + 0.5
    target[0, 0, 0, :3] = 0.0
    pred = target * (1 + 0.8 * (torch.rand(3, 1, 5, 6, generator=g) - 0.5))
    pred[1, 0, 2, 2] = -1.0          # a negative prediction must never count for δ
    mask = torch.rand(3, 5, 6, generator=g) > 0.1
    mask[1, 2, 2] = True
    meter = task.new_meter()
    meter.update(pred[:2], target[:2], mask[:2])
    meter.update(pred[2:], target[2:], mask[2:])
    res = meter.compute()

    p, t = pred[:, 0].numpy().astype(np.float64), target[:, 0].numpy().astype(np.float64)
    v = mask.numpy() & (t > 0)
    p, t = p[v], t[v]
    e = p - t
    ok = [(pi > 0 and max(pi / ti, ti / pi) < 1.25) for pi, ti in zip(p, t)]
    assert res["abs_err"] == pytest.approx(np.abs(e).mean(), rel=1e-9)
    assert res["rel_err"] == pytest.approx((np.abs(e) / t).mean(), rel=1e-9)
    assert res["rmse"] == pytest.approx(np.sqrt((e ** 2).mean()), rel=1e-9)
    assert res["delta1"] == pytest.approx(100 * np.mean(ok), rel=1e-9)
    assert 0 < res["delta1"] < 100


def test_upsamples_low_resolution_prediction():
    task = make_task("depth", "depth")
    pred = torch.full((1, 1, 2, 2), 2.0)
    target = torch.full((1, 1, 4, 4), 3.0)
    assert task.loss(pred, target).item() == pytest.approx(1.0)


def test_picture_fixed_range_versus_per_image_range():
    d = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    per_image = np.asarray(make_task("depth", "depth").visualize(d))
    cmap = colormaps["viridis"]
    rgb = lambda x: np.round(np.array(cmap(x)[:3]) * 255)
    assert per_image[0, 0].tolist() == [0, 0, 0]                        # invalid depth is black
    np.testing.assert_allclose(per_image[0, 1], rgb(0.0), atol=1)        # valid min -> bottom of map
    np.testing.assert_allclose(per_image[1, 1], rgb(1.0), atol=1)        # valid max -> top of map
    fixed = np.asarray(make_task("depth", "depth", value_range=(0.0, 6.0)).visualize(d))
    np.testing.assert_allclose(fixed[1, 1], rgb(0.5), atol=1)            # 3 m is mid-range of 0..6 m
    override = np.asarray(make_task("depth", "depth").visualize(d, value_range=(0.0, 6.0)))
    assert np.array_equal(fixed, override)


def test_postprocess_clips_negative_depth():
    out = np.array([[[-1.0, 2.5]]], dtype=np.float32)
    assert make_task("depth", "depth").postprocess(out).tolist() == [[0.0, 2.5]]
    assert math.isnan(make_task("depth", "d").new_meter().compute()["rmse"])
