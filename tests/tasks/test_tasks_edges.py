"""Edges: class-balanced BCE (HED) and F-measure at a fixed threshold and tolerance."""

import math

import numpy as np
import pytest
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def _bce(x, y):
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_balanced_loss_weights_by_edge_fraction():
    task = make_task("edges", "edges")
    x = [1.0, -2.0, 0.5, 3.0, 7.0]
    pred = torch.tensor(x).view(1, 1, 1, 5)
    target = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 5)
    mask = torch.tensor([[[True, True, True, True, False]]])
    # Valid: 1 edge among 4 pixels -> beta = 3/4 on the edge, 1/4 on the rest.
    w = [0.75, 0.25, 0.25, 0.25]
    y = [1, 0, 0, 0]
    expected = sum(wi * _bce(xi, yi) for wi, xi, yi in zip(w, x, y)) / 4
    assert task.loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    fixed = make_task("edges", "edges", pos_weight=0.95)
    w = [0.95, 0.05, 0.05, 0.05]
    expected = sum(wi * _bce(xi, yi) for wi, xi, yi in zip(w, x, y)) / 4
    assert fixed.loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_empty_batch_gives_zero_loss_connected_to_graph():
    pred = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = make_task("edges", "edges").loss(pred, torch.ones(2, 1, 3, 3), torch.zeros(2, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_f_measure_exact_match_matches_numpy():
    task = make_task("edges", "edges")
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 9, 9, generator=g) > 0.8).float()
    logits = 3.0 * (target - 0.5) + 2.0 * torch.randn(2, 1, 9, 9, generator=g)
    mask = torch.rand(2, 9, 9, generator=g) > 0.1
    meter = task.new_meter()
    meter.update(logits, target, mask)
    res = meter.compute()
    v = mask.numpy()
    pr = (torch.sigmoid(logits)[:, 0].numpy() >= 0.5) & v
    gt = (target[:, 0].numpy() >= 0.5) & v
    p, r = (pr & gt).sum() / pr.sum(), (pr & gt).sum() / gt.sum()
    assert res["precision"] == pytest.approx(100 * p)
    assert res["recall"] == pytest.approx(100 * r)
    assert res["f_measure"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert 0 < res["f_measure"] < 100


def test_tolerance_accepts_an_edge_one_pixel_off():
    target = torch.zeros(1, 1, 5, 5)
    target[0, 0, 2, 2] = 1.0
    logits = torch.full((1, 1, 5, 5), -10.0)
    logits[0, 0, 2, 3] = 10.0
    exact, tolerant = make_task("edges", "e").new_meter(), make_task("edges", "e", tolerance=1).new_meter()
    exact.update(logits, target)
    tolerant.update(logits, target)
    assert exact.compute()["f_measure"] == 0.0
    assert tolerant.compute() == {"f_measure": 100.0, "precision": 100.0, "recall": 100.0}


def test_threshold_and_options_are_validated():
    with pytest.raises(ValidationError, match="threshold"):
        make_task("edges", "e", threshold=1.5)
    with pytest.raises(ValidationError, match="tolerance"):
        make_task("edges", "e", tolerance=-1)
    assert math.isnan(make_task("edges", "e").new_meter().compute()["f_measure"])
    post = make_task("edges", "e").postprocess(np.zeros((1, 2, 2), dtype=np.float32))
    assert post.shape == (2, 2) and np.allclose(post, 0.5)
