"""Segmentation / parts: cross-entropy with ignore and mask, confusion-matrix mIoU."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dymu_rt.core.errors import DataError
from dymu_rt.tasks import make_task

torch.set_num_threads(1)


def _np_miou_acc(gt, pr, valid, c):
    cm = np.zeros((c, c), dtype=np.int64)
    for g, p in zip(gt[valid], pr[valid]):
        cm[g, p] += 1
    ious = []
    for k in range(c):
        tp, fp, fn = cm[k, k], cm[:, k].sum() - cm[k, k], cm[k, :].sum() - cm[k, k]
        if tp + fp + fn > 0:
            ious.append(tp / (tp + fp + fn))
    return 100 * np.mean(ious), 100 * np.trace(cm) / cm.sum()


@pytest.mark.parametrize("kind", ["segmentation", "parts"])
def test_loss_matches_hand_computation_with_ignore_and_mask(kind):
    task = make_task(kind, "seg", num_classes=3)
    pred = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 5.0, 0.0]], [[1.0, 0.0, 3.0]]]])  # [1, 3, 1, 3]
    target = torch.tensor([[[0, -1, 2]]])
    mask = torch.tensor([[[True, True, False]]])
    # Only pixel 0 counts: pixel 1 is ignore (-1), pixel 2 is masked out.
    expected = -(2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(1.0)))
    assert task.loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    # Without the mask pixel 2 joins the average.
    p2 = -(3.0 - math.log(math.exp(1.0) + math.exp(0.0) + math.exp(3.0)))
    assert task.loss(pred, target, None).item() == pytest.approx((expected + p2) / 2, rel=1e-6)


def test_empty_batch_gives_zero_loss_connected_to_graph():
    task = make_task("segmentation", "seg", num_classes=4)
    pred = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = task.loss(pred, torch.full((2, 3, 3), -1), torch.ones(2, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_low_resolution_prediction_is_upsampled_bilinearly():
    task = make_task("segmentation", "seg", num_classes=3)
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(1, 3, 2, 2, generator=g)
    target = torch.randint(0, 3, (1, 4, 4), generator=g)
    up = F.interpolate(pred, size=(4, 4), mode="bilinear", align_corners=False)
    assert task.loss(pred, target).item() == pytest.approx(F.cross_entropy(up, target).item(), rel=1e-6)


def test_miou_hand_example_skips_absent_classes():
    task = make_task("segmentation", "seg", num_classes=4)
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = F.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 4).permute(0, 3, 1, 2).float()
    m = task.new_meter()
    m.update(pred, target, None)
    res = m.compute()
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; classes 2 and 3 absent -> skipped.
    assert res["miou"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert res["pixel_acc"] == pytest.approx(75.0)


def test_meter_matches_numpy_and_is_independent_of_batching():
    c = 5
    task = make_task("parts", "parts", num_classes=c)
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(6, c, 7, 9, generator=g)
    target = torch.randint(-1, c, (6, 7, 9), generator=g)
    mask = torch.rand(6, 7, 9, generator=g) > 0.2
    whole, split = task.new_meter(), task.new_meter()
    whole.update(pred, target, mask)
    for s in (slice(0, 1), slice(1, 4), slice(4, 6)):
        split.update(pred[s], target[s], mask[s])
    gt, pr = target.numpy(), pred.argmax(1).numpy()
    miou, acc = _np_miou_acc(gt, pr, mask.numpy() & (gt >= 0), c)
    for res in (whole.compute(), split.compute()):
        assert res["miou"] == pytest.approx(miou, rel=1e-9)
        assert res["pixel_acc"] == pytest.approx(acc, rel=1e-9)


def test_meter_without_valid_pixels_reports_nan():
    task = make_task("segmentation", "seg", num_classes=3)
    m = task.new_meter()
    m.update(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), -1), None)
    assert all(math.isnan(v) for v in m.compute().values())


def test_out_of_range_label_is_a_clear_error():
    task = make_task("segmentation", "semseg", num_classes=3)
    with pytest.raises(DataError, match="label 7 is out of range"):
        task.loss(torch.randn(1, 3, 1, 2), torch.tensor([[[0, 7]]]))


def test_postprocess_is_argmax_label_map():
    task = make_task("segmentation", "seg", num_classes=3)
    out = np.zeros((3, 2, 2), dtype=np.float32)
    out[2, 0, 1] = 1.0
    out[1, 1, 0] = 1.0
    assert task.postprocess(out).tolist() == [[0, 2], [1, 0]]
