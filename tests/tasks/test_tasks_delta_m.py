"""Δm (Maninis et al. 2019): sign and scale on hand examples."""

import pytest

from dymu_rt.core.errors import ValidationError
from dymu_rt.tasks import delta_m, make_task

TASKS = [make_task("segmentation", "semseg", num_classes=13), make_task("depth", "depth")]
ST = {"semseg": {"miou": 40.0, "pixel_acc": 60.0, "loss": 1.0},
      "depth": {"rmse": 0.50, "abs_err": 0.40, "rel_err": 0.2, "delta1": 80.0}}


def test_hand_example_sign_and_scale():
    mt = {"semseg": {"miou": 44.0, "pixel_acc": 60.0, "loss": 9.0},        # +10 %, 0 % -> +5
          "depth": {"rmse": 0.45, "abs_err": 0.44, "rel_err": 0.2, "delta1": 80.0}}  # +10, -10, 0, 0 -> 0
    assert delta_m(mt, ST, TASKS) == pytest.approx((5.0 + 0.0) / 2)
    # Lower-is-better metrics flip sign: a larger RMSE alone is a loss.
    only_rmse = {"semseg": ["miou"], "depth": ["rmse"]}
    worse = {"semseg": {"miou": 40.0}, "depth": {"rmse": 0.6}}
    assert delta_m(worse, ST, TASKS, metrics=only_rmse) == pytest.approx(-10.0)
    assert delta_m(ST, ST, TASKS) == 0.0


def test_directions_can_be_given_as_a_mapping():
    dirs = {"a": {"err": False}, "b": {"acc": True}}
    mt, st = {"a": {"err": 1.0}, "b": {"acc": 0.9}}, {"a": {"err": 2.0}, "b": {"acc": 0.6}}
    assert delta_m(mt, st, dirs) == pytest.approx((50.0 + 50.0) / 2)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValidationError, match="non-zero single-task"):
        delta_m({"a": {"err": 1.0}}, {"a": {"err": 0.0}}, {"a": {"err": False}})
    with pytest.raises(ValidationError, match="task 'depth' has no multi-task metrics"):
        delta_m({"semseg": ST["semseg"]}, ST, TASKS)
