"""make_task, the contract every kind shares, and the paper's loss weights as data."""

import math

import pytest
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.tasks import PAPER_LOSS_WEIGHTS, TASK_KINDS, make_task, paper_loss_weight

torch.set_num_threads(1)

LABELLED = {"segmentation", "parts", "classification"}


def _task(kind):
    return make_task(kind, f"t_{kind}", num_classes=4 if kind in LABELLED else None, loss_weight=2.5)


def _batch(task, b=2, h=5, w=6, lowres=False):
    """A random (pred, target, mask) batch in the data contract of ``task``."""
    g = torch.Generator().manual_seed(0)
    ph, pw = (h // 2, w // 2) if lowres else (h, w)
    if task.kind == "classification":
        return torch.randn(b, 4, generator=g), torch.randint(0, 4, (b,), generator=g), torch.ones(b, dtype=torch.bool)
    pred = torch.randn(b, task.out_channels, ph, pw, generator=g)
    mask = torch.rand(b, h, w, generator=g) > 0.2
    if task.kind in ("segmentation", "parts"):
        target = torch.randint(-1, 4, (b, h, w), generator=g)
    elif task.kind == "depth":
        target = torch.rand(b, 1, h, w, generator=g) + 0.5
    elif task.kind == "normals":
        target = torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1)
    else:
        target = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    return pred, target, mask


@pytest.mark.parametrize("kind", sorted(TASK_KINDS))
def test_every_kind_honours_the_shared_contract(kind):
    task = _task(kind)
    assert task.kind == kind and task.loss_weight == 2.5
    assert task.primary_metric in task.metric_directions
    pred, target, mask = _batch(task, lowres=kind != "classification")
    pred.requires_grad_(True)
    loss = task.loss(pred, target, mask)
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    meter = task.new_meter()
    meter.update(pred.detach(), target, mask)
    res = meter.compute()
    assert set(res) == set(task.metric_directions)
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())
    # No valid element: loss 0 (not NaN) and still differentiable.
    empty = torch.zeros_like(mask)
    zero = task.loss(pred, target, empty)
    assert zero.item() == 0.0 and zero.requires_grad


def test_make_task_rejects_bad_input_with_clear_errors():
    with pytest.raises(ValidationError, match="task kind 'segmantation' is unknown"):
        make_task("segmantation", "semseg", num_classes=13)
    with pytest.raises(ValidationError, match="num_classes None is invalid"):
        make_task("segmentation", "semseg")
    with pytest.raises(ValidationError, match="num_classes 5 is invalid, expected None or 3"):
        make_task("normals", "normals", num_classes=5)
    with pytest.raises(ValidationError, match="loss_weight -1"):
        make_task("depth", "depth", loss_weight=-1)
    with pytest.raises(ValidationError, match="option 'tolerance' is unknown"):
        make_task("depth", "depth", tolerance=2)
    assert make_task("normals", "normals", num_classes=3).out_channels == 3


def test_paper_loss_weights_are_data_and_match_the_presets():
    assert PAPER_LOSS_WEIGHTS["nyuv2"] == {"semseg": 1, "normals": 10, "depth": 3}
    assert PAPER_LOSS_WEIGHTS["pascal"] == {"semseg": 1, "human_parts": 2, "saliency": 5, "normals": 10,
                                            "edges": 50}
    assert paper_loss_weight("cifar100", "fish") == 1.0
    with pytest.raises(ValidationError, match="benchmark 'kitti'"):
        paper_loss_weight("kitti", "depth")
    from dymu_rt.models.presets import PRESETS

    for preset in PRESETS.values():
        if preset.dataset in PAPER_LOSS_WEIGHTS:
            for t in preset.tasks:
                assert t.loss_weight == paper_loss_weight(preset.dataset, t.name), (preset.name, t.name)
