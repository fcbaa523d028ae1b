"""Δ_T on hand-made metric dicts, each value worked out here (issue 28, problem 3).

Δ_T (Choi & Im eqs. 10-11): per task the mean over its metrics of
(-1)^{lower is better} · (M_mt − M_st) / M_st · 100, then the mean over tasks. Cost: < 1 s.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.comparison import delta_t
from dymu_rt.tasks.depth import DepthTask
from dymu_rt.tasks.segmentation import SegmentationTask

SEG = SimpleNamespace(name="semseg", metric_directions=SegmentationTask.metric_directions)
DEPTH = SimpleNamespace(name="depth", metric_directions=DepthTask.metric_directions)


def test_directions_are_what_the_paper_says():
    assert SegmentationTask.metric_directions == {"miou": True, "pixel_acc": True}
    assert DepthTask.metric_directions == {"abs_err": False, "rel_err": False, "rmse": False, "delta1": True}


def test_delta_t_by_hand():
    st = {"semseg": {"miou": 0.40, "pixel_acc": 0.80, "loss": 1.0},
          "depth": {"abs_err": 0.50, "rel_err": 0.20, "rmse": 1.00, "delta1": 0.60}}
    mt = {"semseg": {"miou": 0.44, "pixel_acc": 0.76, "loss": 9.0},          # loss: no direction, ignored
          "depth": {"abs_err": 0.40, "rel_err": 0.25, "rmse": 1.00, "delta1": 0.66}}
    # semseg: miou +10 %, pixel_acc −5 %                  -> +2.5
    # depth: abs_err 0.5->0.4 lower is better: +20 %; rel_err 0.2->0.25: −25 %; rmse 0; delta1 +10 %
    #        -> (20 − 25 + 0 + 10) / 4 = +1.25
    res = delta_t(mt, st, [SEG, DEPTH])
    assert res["per_task"]["semseg"] == pytest.approx(2.5)
    assert res["per_task"]["depth"] == pytest.approx(1.25)
    assert res["mean"] == pytest.approx((2.5 + 1.25) / 2)
    assert res["skipped"] == []


def test_single_task_against_itself_is_zero_and_a_worse_net_is_negative():
    st = {"semseg": {"miou": 0.5, "pixel_acc": 0.9}, "depth": {"abs_err": 0.5, "rmse": 0.8}}
    assert delta_t(st, st, [SEG, DEPTH])["mean"] == 0.0
    worse = {"semseg": {"miou": 0.45, "pixel_acc": 0.9}, "depth": {"abs_err": 0.6, "rmse": 0.8}}
    res = delta_t(worse, st, [SEG, DEPTH])
    assert res["per_task"]["semseg"] == pytest.approx(-5.0)         # −10 % on one of two metrics
    assert res["per_task"]["depth"] == pytest.approx(-10.0)         # error up 20 %: worse, negative
    assert res["mean"] == pytest.approx(-7.5)


def test_a_zero_single_task_metric_is_skipped_and_listed():
    st = {"semseg": {"miou": 0.0, "pixel_acc": 0.5}}
    mt = {"semseg": {"miou": 0.3, "pixel_acc": 0.6}}
    res = delta_t(mt, st, [SEG])
    assert res["skipped"] == ["semseg.miou"]
    assert res["per_task"]["semseg"] == pytest.approx(20.0)
    with pytest.raises(ValidationError, match="Δ_T is undefined"):
        delta_t(mt, {"semseg": {"miou": 0.0, "pixel_acc": 0.0}}, [SEG])


def test_only_metrics_both_sides_report_and_skips_of_every_task_are_listed():
    st = {"semseg": {"miou": 0.0, "pixel_acc": 0.5}, "depth": {"abs_err": 0.0, "rmse": 1.0, "delta1": 0.5}}
    mt = {"semseg": {"miou": 0.3, "pixel_acc": 0.6}, "depth": {"abs_err": 0.2, "rmse": 0.9}}   # no delta1
    res = delta_t(mt, st, [SEG, DEPTH])
    assert res["skipped"] == ["semseg.miou", "depth.abs_err"]
    assert res["per_task"]["depth"] == pytest.approx(10.0)          # rmse only: delta1 is single-task only
