"""Saliency: BCE with logits, binary mIoU at 0.5 and maxF (beta^2 = 0.3)."""

import math

import numpy as np
import pytest
import torch

from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def _np_max_f(prob, gt, valid):
    """Reference maxF: per-image P/R at t = k/255, mean over images, F_0.3, max over t."""
    ps, rs = [], []
    for t in np.arange(256) / 255:
        p_img, r_img = [], []
        for b in range(prob.shape[0]):
            pr, g = prob[b][valid[b]] >= t, gt[b][valid[b]]
            tp = (pr & g).sum()
            p_img.append(tp / pr.sum() if pr.sum() else 0.0)
            r_img.append(tp / g.sum() if g.sum() else 0.0)
        ps.append(np.mean(p_img))
        rs.append(np.mean(r_img))
    ps, rs = np.array(ps), np.array(rs)
    f = np.where(0.3 * ps + rs > 0, 1.3 * ps * rs / np.maximum(0.3 * ps + rs, 1e-300), 0.0)
    return 100 * f.max()


def test_loss_is_bce_with_logits_over_valid_pixels():
    task = make_task("saliency", "saliency")
    pred = torch.tensor([0.0, 2.0, 9.0]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    mask = torch.tensor([[[True, True, False]]])
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert task.loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_empty_batch_gives_zero_loss_connected_to_graph():
    task = make_task("saliency", "saliency")
    pred = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = task.loss(pred, torch.ones(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_metrics_match_numpy():
    task = make_task("saliency", "saliency")
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 1, 8, 8, generator=g) > 0.6).float()
    logits = 2.0 * (target - 0.5) + 1.5 * torch.randn(3, 1, 8, 8, generator=g)
    mask = torch.rand(3, 8, 8, generator=g) > 0.1
    meter = task.new_meter()
    meter.update(logits[:1], target[:1], mask[:1])
    meter.update(logits[1:], target[1:], mask[1:])
    res = meter.compute()

    prob = torch.sigmoid(logits.double())[:, 0].numpy()
    gt, v = target[:, 0].numpy() >= 0.5, mask.numpy()
    assert res["max_f"] == pytest.approx(_np_max_f(prob, gt, v), rel=1e-9)
    pr = prob >= 0.5
    ious = [((pr == c) & (gt == c) & v).sum() / (((pr == c) | (gt == c)) & v).sum() for c in (False, True)]
    assert res["miou"] == pytest.approx(100 * np.mean(ious), rel=1e-9)
    assert 0 < res["miou"] < 100 and 0 < res["max_f"] < 100


def test_perfect_prediction_scores_100():
    task = make_task("saliency", "saliency")
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    meter = task.new_meter()
    meter.update(20.0 * (target - 0.5), target, None)
    assert meter.compute() == {"max_f": pytest.approx(100.0), "miou": pytest.approx(100.0)}


def test_postprocess_is_sigmoid():
    post = make_task("saliency", "s").postprocess(np.array([[[0.0, 100.0, -100.0]]], dtype=np.float32))
    np.testing.assert_allclose(post, [[0.5, 1.0, 0.0]], atol=1e-6)
