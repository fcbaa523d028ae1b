"""The run-loading half of evaluate/compare.py on tiny run directories (issue 28, second round):
static_forward, evaluate_static(_run), single_task_metrics, dymu_delta_t. The runs are the
compile tests' random-init tiny runs (synth-nyu at 32x32, narrowest widths: tests/compile/
run_fixture.py) plus a finished AdaShare and DAG run built here; 2 validation scenes.

References are written out here: Δ_T from the metric dicts with the sign rule of Choi & Im
(eq. 10-11), HV of one point as the product of its distances to the reference, the static
forward as the network called with the stored decisions, metrics recomputed with the
evaluation loop on that forward. ~5 s in all (fixtures ~1 s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))

from run_fixture import add_phn_bn, make_static_run, make_tiny_run, tiny_preset  # noqa: E402

from dymu_rt.core.preference import EVAL_ETA, sample_preferences  # noqa: E402
from dymu_rt.core.errors import ValidationError  # noqa: E402
from dymu_rt.evaluate import comparison as C  # noqa: E402
from dymu_rt.evaluate.uniformity import uniformity  # noqa: E402
from dymu_rt.models.graph import graph_cost, materialize_graph  # noqa: E402
from dymu_rt.run.layout import RunDir  # noqa: E402
from dymu_rt.training.common import make_split, make_tasks  # noqa: E402
from dymu_rt.training.evaluation import evaluate_tree  # noqa: E402
from dymu_rt.methods import method_for  # noqa: E402


def _evaluate_static(path, **kw):
    """C.evaluate_static with the run's method's forward and label (what `dymu-rt eval` passes)."""
    run, m = RunDir(path), method_for(path)
    return C.evaluate_static(path, lambda: m.forward(run), m.label(run.read_config()), **kw)


def _evaluate_static_run(path, **kw):
    return method_for(path).evaluate(path, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"dymu": make_tiny_run(root / "dymu"), "dymu_phn": make_tiny_run(root / "dymu_phn", seed=1),
            "adashare": make_static_run(root / "ada", "adashare"), "dag": make_static_run(root / "dag", "dag"),
            "root": root}


def _hand_delta_t(mt, st, tasks):
    """Δ_T written out: per task the mean over metrics of s·(m − b)/b·100 (s = +1 when higher
    is better, −1 when lower is), metrics with b = 0 left out; Δ_T = mean over tasks."""
    per = {}
    for t in tasks:
        gains = [(1 if up else -1) * (mt[t.name][m] - st[t.name][m]) / st[t.name][m] * 100
                 for m, up in t.metric_directions.items() if m in mt[t.name] and st[t.name].get(m, 0) != 0]
        per[t.name] = sum(gains) / len(gains)
    return sum(per.values()) / len(per), per


def _flat(d):
    """Nested metric dicts as {(task, metric): value}, for pytest.approx."""
    return {(t, m): v for t, ms in d.items() for m, v in ms.items()}


def _val(run_path, n=2, seed=0):
    run = RunDir(run_path)
    return make_split(run.preset(), run.read_config()["data"], "val", n=n, seed=seed)


# -- static_forward --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["adashare", "dag"])
def test_static_forward_is_the_network_with_its_stored_decisions(runs, method):
    run = RunDir(runs[method])
    preset, net, graph, forward = method_for(run).forward(run)
    _, net2, graph2, dec = method_for(run).load(run)
    assert graph.id == graph2.id and preset.name == "synth-nyu"
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    if method == "adashare":
        want = net2(x, torch.tensor(dec["policy"], dtype=torch.float32))
        full = net2(x, torch.ones(np.asarray(dec["policy"]).shape))
    else:
        want = net2(x, tuple(torch.tensor(dec["masks"][k], dtype=torch.float32) for k in "ABG"))
        full = net2(x, tuple(torch.ones(np.asarray(dec["masks"][k]).shape) for k in "ABG"))
    with torch.no_grad():
        got = forward(x)
    assert set(got) == set(want) == {"semseg", "normals", "depth"}
    for k in want:
        torch.testing.assert_close(got[k], want[k])
        assert got[k].dtype == torch.float32
    assert any(not torch.allclose(want[k], full[k]) for k in want)       # the decisions matter


# -- evaluate_static ---------------------------------------------------------------------------------

def test_evaluate_static_report_by_hand(runs):
    rep = _evaluate_static(runs["adashare"], n_val=2, single_task=str(runs["dymu"]), progress=False)  # seed 0
    run = RunDir(runs["adashare"])
    preset, net, graph, dec = method_for(run).load(run)
    tasks = make_tasks(preset)
    val = _val(runs["adashare"])
    policy = torch.tensor(dec["policy"], dtype=torch.float32)
    metrics = evaluate_tree(None, tasks, val, forward=lambda x: net(x, policy))
    assert _flat(rep["metrics"]) == pytest.approx(_flat(metrics))
    losses = np.array([metrics[t.name]["loss"] for t in tasks])
    assert (rep["run"], rep["method"], rep["preset"], rep["tasks"], rep["n_val"], rep["topology"]) == \
        (str(runs["adashare"]), "adashare", "synth-nyu", ["semseg", "normals", "depth"], 2, graph.id)
    assert rep["reference_point"] == [2.6, 0.5, 1.5] and rep["reference_source"] == "preset synth-nyu"
    (row,) = rep["table"]
    outside = int(not np.all(losses < np.array([2.6, 0.5, 1.5])))
    hv = 0.0 if outside else float(np.prod(np.array([2.6, 0.5, 1.5]) - losses))
    rs = [p.r for p in sample_preferences(3, 20, np.random.default_rng(0), eta=EVAL_ETA)]
    cost = graph_cost(materialize_graph(net, graph, preset.mean, preset.std), tuple(preset.input_size))
    single = evaluate_tree(RunDir(runs["dymu"]).load_anchor(), tasks, val, None, None)
    mean, per = _hand_delta_t(metrics, single, tasks)
    assert row == pytest.approx({"method": "AdaShare", "c": None, "hv": hv, "n_points": 1, "outside_reference": outside,
                                 "uniformity": float(np.mean([uniformity(np.asarray(r), losses) for r in rs])),
                                 "params": float(cost.params), "gmacs": cost.gmacs, "gflops_paper": cost.gflops_paper,
                                 "delta_t": mean})
    assert 0 < row["params"] < sum(p.numel() for p in net.parameters())    # skipped blocks are not counted
    assert rep["delta_t"]["mean"] == pytest.approx(mean) and rep["delta_t"]["per_task"] == pytest.approx(per)
    assert rep["delta_t"]["single_task_run"] == str(runs["dymu"])
    assert rep["delta_t"]["skipped"] == [f"{t.name}.{m}" for t in tasks for m in t.metric_directions
                                         if m in single[t.name] and single[t.name][m] == 0]
    assert rep["delta_t_note"] is None
    assert rep["units"] == {"gmacs": "multiply-adds (conv + linear) / 1e9; FLOPs = 2 x MACs",
                            "gflops_paper": "the paper's GFLOPs: fvcore's count / 1e9 (dymu_rt.models.cost)",
                            "delta_t": "percent; positive = better than single-task"}


def test_evaluate_static_with_a_reference_that_bounds_it_and_another_seed(runs):
    ref = [40.0, 30.0, 20.0]
    rep = _evaluate_static(runs["dag"], n_val=2, seed=1, reference=ref, n_r=3, progress=False)
    preset, net, graph, dec = method_for(runs["dag"]).load(RunDir(runs["dag"]))
    tasks = make_tasks(preset)
    masks = tuple(torch.tensor(dec["masks"][k], dtype=torch.float32) for k in "ABG")
    metrics = evaluate_tree(None, tasks, _val(runs["dag"], seed=1), forward=lambda x: net(x, masks))
    losses = np.array([metrics[t.name]["loss"] for t in tasks])
    (row,) = rep["table"]
    assert rep["reference_source"] == "user" and rep["reference_point"] == ref
    assert row["method"] == "DAG M=3" and row["outside_reference"] == 0
    assert row["hv"] == pytest.approx(float(np.prod(np.array(ref) - losses)))
    rs = [p.r for p in sample_preferences(3, 3, np.random.default_rng(1), eta=EVAL_ETA)]
    assert row["uniformity"] == pytest.approx(float(np.mean([uniformity(np.asarray(r), losses) for r in rs])))
    assert rep["delta_t"] is None and row["delta_t"] is None
    assert rep["delta_t_note"] == "give --single-task DYMU_RUN (its anchor = the single-task nets) for Δ_T"


def test_evaluate_static_without_any_reference_takes_1_1_times_its_losses(runs, monkeypatch):
    import dymu_rt.evaluate.comparison as mod

    monkeypatch.setattr(mod, "resolve_reference", lambda preset, reference: (None, "data"))
    rep = _evaluate_static(runs["adashare"], n_val=2, progress=False)
    losses = np.array([rep["metrics"][t]["loss"] for t in rep["tasks"]])
    assert rep["reference_point"] == pytest.approx(list(1.1 * losses)) and rep["reference_source"] == "data"
    assert rep["table"][0]["hv"] == pytest.approx(float(np.prod(0.1 * losses)))
    assert rep["table"][0]["outside_reference"] == 0


def test_single_task_run_must_be_a_dymu_run_of_the_same_preset(runs, tmp_path):
    with pytest.raises(ValidationError) as e:
        _evaluate_static(runs["adashare"], n_val=2, single_task=str(runs["dag"]), progress=False)
    assert str(e.value) == (f"--single-task {runs['dag']}: expected a DYMU run (its anchor = the single-task nets), "
                            "got a dag run")
    import dataclasses

    other = make_tiny_run(tmp_path / "other", preset=dataclasses.replace(tiny_preset(), name="synth-other"))
    with pytest.raises(ValidationError) as e:
        _evaluate_static(runs["adashare"], n_val=2, single_task=str(other), progress=False)
    assert str(e.value) == f"--single-task {other} is a run of preset 'synth-other', not 'synth-nyu'"
    fewer = make_tiny_run(tmp_path / "fewer", preset=dataclasses.replace(tiny_preset(),
                                                                         tasks=tiny_preset().tasks[:2]))
    with pytest.raises(ValidationError, match="is a run of preset 'synth-nyu', not 'synth-nyu'"):
        _evaluate_static(runs["adashare"], n_val=2, single_task=str(fewer), progress=False)


def test_single_task_metrics_are_the_anchors(runs):
    val = _val(runs["dymu"])
    preset = RunDir(runs["dymu"]).preset()
    want = evaluate_tree(RunDir(runs["dymu"]).load_anchor(), make_tasks(preset), val, None, None)
    assert _flat(C.single_task_metrics(runs["dymu"], 2, 0)) == pytest.approx(_flat(want))
    assert _flat(C.single_task_metrics(RunDir(runs["dymu"]), None, 0, val=val)) == pytest.approx(_flat(want))
    other = C.single_task_metrics(runs["dymu"], 2, 5)                    # the seed picks the scenes
    assert _flat(other) != pytest.approx(_flat(want))


# -- evaluate_static_run -----------------------------------------------------------------------------

def test_evaluate_static_run_writes_the_report(runs, tmp_path):
    out = tmp_path / "plots"
    rep = _evaluate_static_run(runs["dag"], n_val=2, reference="40,30,20", seed=1, plots=out, progress=False)
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(rep))
    assert rep["reference_point"] == [40.0, 30.0, 20.0] and rep["n_val"] == 2
    direct = _evaluate_static(runs["dag"], n_val=2, seed=1, reference=[40.0, 30.0, 20.0], progress=False)
    assert rep["table"][0] == pytest.approx(direct["table"][0])
    rep2 = _evaluate_static_run(runs["adashare"], n_val=2, single_task=runs["dymu"], progress=False)
    assert (Path(runs["adashare"]) / "eval" / "report.json").is_file()
    assert rep2["delta_t"]["single_task_run"] == str(runs["dymu"])


# -- dymu_delta_t ------------------------------------------------------------------------------------

def test_dymu_delta_t_at_uniform_r_for_each_c(runs):
    run = RunDir(runs["dymu"])
    preset, anchor, edge, weight = run.load_all()
    tasks = make_tasks(preset)
    val = _val(runs["dymu"])
    single = evaluate_tree(anchor, tasks, val, None, None)
    got = C.dymu_delta_t(runs["dymu"], cs=(0.0, 0.5, 1.0), n_val=2)
    r = torch.full((3,), 1.0 / 3)
    assert got["r"] == [1.0 / 3] * 3 and got["reference"] == "single-task anchor of this run"
    assert list(got["by_c"]) == ["0", "0.5", "1"] and "phn_bn" not in got
    for c in (0.0, 0.5, 1.0):
        ct = torch.tensor(c)
        m = evaluate_tree(anchor, tasks, val, edge.architecture(r, ct), weight(r, ct))
        mean, per = _hand_delta_t(m, single, tasks)
        assert got["by_c"][f"{c:g}"]["mean"] == pytest.approx(mean)
        assert got["by_c"][f"{c:g}"]["per_task"] == pytest.approx(per)
    assert got["by_c"]["0"]["mean"] != pytest.approx(got["by_c"]["1"]["mean"])      # c changes the tree
    # a given single-task result is used as is
    fake = {t.name: {m: 2.0 * v for m, v in single[t.name].items()} for t in tasks}
    again = C.dymu_delta_t(runs["dymu"], cs=(1.0,), n_val=2, single=fake)
    m1 = evaluate_tree(anchor, tasks, val, edge.architecture(r, torch.tensor(1.0)), weight(r, torch.tensor(1.0)))
    assert again["by_c"]["1"]["mean"] == pytest.approx(_hand_delta_t(m1, fake, tasks)[0])


def test_dymu_delta_t_adds_phn_bn_when_trained(runs):
    add_phn_bn(runs["dymu_phn"])
    from dymu_rt.training.phn import load_phn_bn

    run = RunDir(runs["dymu_phn"])
    preset, anchor, _, _ = run.load_all()
    tasks = make_tasks(preset)
    val = _val(runs["dymu_phn"])
    single = evaluate_tree(anchor, tasks, val, None, None)
    phn = load_phn_bn(run)
    r = torch.full((3,), 1.0 / 3)
    want = evaluate_tree(None, tasks, val, forward=lambda x: phn(x, r))
    got = C.dymu_delta_t(runs["dymu_phn"], cs=(0.0,), n_val=2)
    mean, per = _hand_delta_t(want, single, tasks)
    assert got["phn_bn"]["mean"] == pytest.approx(mean) and got["phn_bn"]["per_task"] == pytest.approx(per)


def test_a_loss_on_the_reference_is_outside_it(runs):
    """Strictly inside counts (a point on the reference bounds no volume): a reference equal to
    one of the losses reports the point outside."""
    first = _evaluate_static(runs["adashare"], n_val=2, reference=[50.0, 50.0, 50.0], progress=False)
    loss = [first["metrics"][t]["loss"] for t in first["tasks"]]
    on = _evaluate_static(runs["adashare"], n_val=2, reference=[loss[0], 50.0, 50.0], progress=False)
    assert first["table"][0]["outside_reference"] == 0 and on["table"][0]["outside_reference"] == 1
    assert on["table"][0]["hv"] == 0.0


def test_static_eval_refusal_is_one_whole_sentence_and_one_scene_is_enough(runs, tmp_path):
    with pytest.raises(ValidationError) as e:
        C.evaluate_static_run(tmp_path, None, "", grid="0.1")
    assert str(e.value) == (f"--grid does not apply to {tmp_path}: it holds one static architecture (no "
                            "preferences to sweep)")
    rep = _evaluate_static_run(runs["dag"], n_val=1, plots=tmp_path / "one", progress=False)
    assert rep["n_val"] == 1
    by_default = _evaluate_static_run(runs["dag"], n_val=2, plots=tmp_path / "d", progress=False)
    seed0 = _evaluate_static(runs["dag"], n_val=2, seed=0, progress=False)
    assert by_default["table"][0] == pytest.approx(seed0["table"][0])      # the default seed is 0


def test_dymu_delta_t_uses_the_seed_for_its_scenes(runs):
    run = RunDir(runs["dymu"])
    preset, anchor, edge, weight = run.load_all()
    tasks = make_tasks(preset)
    val = _val(runs["dymu"], seed=3)
    single = evaluate_tree(anchor, tasks, val, None, None)
    r, ct = torch.full((3,), 1.0 / 3), torch.tensor(1.0)
    m = evaluate_tree(anchor, tasks, val, edge.architecture(r, ct), weight(r, ct))
    got = C.dymu_delta_t(runs["dymu"], cs=(1.0,), n_val=2, seed=3)
    assert got["by_c"]["1"]["mean"] == pytest.approx(_hand_delta_t(m, single, tasks)[0])


def test_dymu_delta_t_before_stage_2_uses_no_bn_deltas(runs, tmp_path):
    """A run whose weight hypernet has not been trained yet: the trees run with the anchor's
    own BN (no deltas)."""
    import shutil

    path = tmp_path / "no_weight"
    shutil.copytree(runs["dymu"], path)
    from dymu_rt.core.io import atomic_write_json

    run = RunDir(path)
    cfg = run.read_config()
    cfg["stages"]["weight"] = {"done": False}
    atomic_write_json(run.config_path, cfg)
    preset, anchor, edge, weight = run.load_all()
    assert weight is None
    tasks = make_tasks(preset)
    val = _val(path)
    single = evaluate_tree(anchor, tasks, val, None, None)
    r, ct = torch.full((3,), 1.0 / 3), torch.tensor(1.0)
    m = evaluate_tree(anchor, tasks, val, edge.architecture(r, ct), None)
    got = C.dymu_delta_t(path, cs=(1.0,), n_val=2)
    assert got["by_c"]["1"]["mean"] == pytest.approx(_hand_delta_t(m, single, tasks)[0])
