"""Classification: cross-entropy over valid images, accuracy, softmax postprocess."""

import math

import numpy as np
import pytest
import torch

from dymu_rt.core.errors import DataError
from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def test_loss_and_accuracy_respect_the_mask():
    task = make_task("classification", "fish", num_classes=3)
    pred = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [5.0, 0.0, 0.0]])
    target = torch.tensor([0, 1, 2])
    mask = torch.tensor([True, True, False])
    lse = lambda v: math.log(sum(math.exp(x) for x in v))
    expected = ((lse([2, 0, 0]) - 2) + (lse([0, 1, 3]) - 1)) / 2
    assert task.loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    meter = task.new_meter()
    meter.update(pred[:1], target[:1], mask[:1])
    meter.update(pred[1:], target[1:], mask[1:])
    assert meter.compute() == {"accuracy": pytest.approx(50.0)}


def test_empty_batch_gives_zero_loss_connected_to_graph():
    task = make_task("classification", "fish", num_classes=5)
    pred = torch.randn(4, 5, requires_grad=True)
    loss = task.loss(pred, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_bad_label_is_a_clear_error():
    with pytest.raises(DataError, match="class 5 is out of range"):
        make_task("classification", "fish", num_classes=5).loss(torch.randn(1, 5), torch.tensor([5]))


def test_postprocess_softmax_and_bar_chart():
    task = make_task("classification", "fish", num_classes=4, class_names=["a", "b", "c", "d"])
    post = task.postprocess(np.array([0.0, 2.0, 1.0, -1.0], dtype=np.float32))
    assert post.sum() == pytest.approx(1.0) and int(post.argmax()) == 1
    img = task.visualize(post)
    assert img.mode == "RGB" and img.size == (160, 120)
    assert task.visualize(post, size=(200, 90)).size == (200, 90)
