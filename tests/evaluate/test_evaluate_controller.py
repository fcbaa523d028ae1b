"""evaluate_controller, write_eval_plots and `dymu-rt eval` on tiny run directories."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import run_cli as _cli
from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.controller import DATA_REFERENCE, evaluate_controller
from dymu_rt.evaluate.hypervolume import hypervolume
from dymu_rt.evaluate.report import parse_tree_spec, write_eval_plots
from dymu_rt.evaluate.uniformity import mean_uniformity, uniformity
from dymu_rt.models.cost import CostModel
from dymu_rt.run.layout import RunDir

TASKS = ["semseg", "normals", "depth"]
SMALL = dict(n_r=3, n_val=4, n_cost=8, progress=False)
BIG_REF = [50.0, 50.0, 50.0]       # every random-weight loss lies inside: HV > 0


def _losses(metrics):
    return [metrics[t]["loss"] for t in TASKS]


def _row(report, method, c):
    hits = [row for row in report["table"] if row["method"] == method and row["c"] == c]
    assert len(hits) == 1, (method, c, [(r["method"], r["c"]) for r in report["table"]])
    return hits[0]


@pytest.fixture(scope="module")
def report(eval_run):
    return evaluate_controller(eval_run, reference=BIG_REF, **SMALL)


def test_table_rows_per_c_with_baselines(report, eval_run):
    assert report["tasks"] == TASKS and report["n_val"] == 4
    assert len(report["preferences"]) == 3 * 2            # 3 sampled r x c in {0, 1}
    for c in (0.0, 1.0):
        for method in ("DYMU (ours)", "DYMU w/o adaptation", "PHN-BN"):
            row = _row(report, method, c)
            assert row["n_points"] == 3 and row["hv"] > 0
    single = _row(report, "single-task (anchor)", None)
    _, anchor, _, _ = RunDir(eval_run).load_all()
    cost = CostModel(anchor)
    assert single["params"] == cost.full_cost().params and single["gmacs"] == pytest.approx(cost.full_cost().gmacs)
    phn = _row(report, "PHN-BN", 0.0)
    # PHN-BN is the shared-encoder net: one stream (stem, backbone, R-ASPP) for every head.
    assert phn["params"] == cost.shared_encoder_cost().params < single["params"]
    assert single["gflops_paper"] == pytest.approx(cost.full_cost().gflops_paper)
    assert single["gflops_paper"] > single["gmacs"]
    assert report["controller_params"]["total"] == (report["controller_params"]["edge_hypernet"]
                                                    + report["controller_params"]["weight_hypernet"])
    # The weight hypernet changes the losses (it is not the w/o-adaptation row twice).
    assert any(_losses(p["metrics"]) != _losses(p["metrics_no_adaptation"]) for p in report["preferences"])
    assert report["controller_params"]["weight_hypernet"] > 0
    assert set(report["controllability"]["mean_params_by_c"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}


def test_hv_and_uniformity_agree_with_the_metric_functions(report):
    ref = np.asarray(report["reference_point"])
    assert report["reference_source"] == "user" and ref.tolist() == BIG_REF
    for c in (0.0, 1.0):
        prefs = [p for p in report["preferences"] if p["c"] == c]
        rs = [p["r"] for p in prefs]
        for method, key in (("DYMU (ours)", "metrics"), ("DYMU w/o adaptation", "metrics_no_adaptation"),
                            ("PHN-BN", "metrics_phn_bn")):
            L = [_losses(p[key]) for p in prefs]
            row = _row(report, method, c)
            assert row["hv"] == pytest.approx(hypervolume(L, ref), rel=1e-12)
            assert row["uniformity"] == pytest.approx(mean_uniformity(rs, L), rel=1e-12)
            assert row["outside_reference"] == 0
        # Params/GMACs rows of the table are the mean over n_cost sampled trees, not zeros.
        assert _row(report, "DYMU (ours)", c)["gmacs"] > 0
    single = _row(report, "single-task (anchor)", None)
    L = _losses(report["single_task"])
    assert single["hv"] == pytest.approx(float(np.prod(ref - np.asarray(L))))
    assert single["uniformity"] == pytest.approx(uniformity([1 / 3] * 3, L))


def test_reference_sources(eval_run, no_weight_run):
    # Preset default: the tiny run is synth-nyu, whose preset fixes the reference point.
    rep = evaluate_controller(eval_run, **SMALL)
    assert rep["reference_source"] == "preset synth-nyu" and rep["reference_point"] == [2.6, 0.5, 1.5]
    row = _row(rep, "DYMU (ours)", 0.0)
    L = np.asarray([_losses(p["metrics"]) for p in rep["preferences"] if p["c"] == 0.0])
    assert row["outside_reference"] == int(np.sum(~np.all(L < [2.6, 0.5, 1.5], axis=1)))
    assert row["hv"] == pytest.approx(hypervolume(L, [2.6, 0.5, 1.5]))
    # Unregistered preset without a reference: 1.1 x the worst loss seen, said so.
    rep = evaluate_controller(no_weight_run, **SMALL)
    assert rep["reference_source"] == DATA_REFERENCE
    seen = [_losses(p["metrics_no_adaptation"]) for p in rep["preferences"]] + [_losses(rep["single_task"])]
    assert rep["reference_point"] == pytest.approx((1.1 * np.max(seen, axis=0)).tolist())


def test_without_weight_hypernet_or_phn(no_weight_run):
    rep = evaluate_controller(no_weight_run, cs=[0.5], **SMALL)
    methods = {(row["method"], row["c"]) for row in rep["table"]}
    assert methods == {("DYMU w/o adaptation", 0.5), ("single-task (anchor)", None)}
    assert rep["controller_params"]["weight_hypernet"] == 0
    assert all(p["metrics"] == p["metrics_no_adaptation"] for p in rep["preferences"])


def test_grid_mode(eval_run):
    rep = evaluate_controller(eval_run, mode="grid", step="0.5", c_step="1", n_val=2, n_cost=2,
                              progress=False)
    assert len(rep["preferences"]) == 6 * 2
    assert sorted({p["c"] for p in rep["preferences"]}) == [0.0, 1.0]
    assert {tuple(p["r"]) for p in rep["preferences"]} == {(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5),
                                                          (0.0, 1.0, 0.0), (0.0, 0.5, 0.5), (0.0, 0.0, 1.0)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(cs=[2.0]), "outside"),
    (dict(cs=[]), "empty"),
    (dict(cs=0.5), "sequence"),
    (dict(n_cost=0), "n_cost"),
    (dict(n_r=0), "n_r"),
    (dict(n_val=0), "n_val"),
    (dict(mode="random"), "mode"),
    (dict(mode="grid", step="0.3"), "0.3"),
    (dict(mode="grid", cs=[0.0]), "c_step"),
    (dict(reference=[1.0, 2.0]), "2 values, expected 3"),
    (dict(reference=[1.0, float("nan"), 1.0]), "finite"),
])
def test_arguments_are_validated_before_evaluating(eval_run, monkeypatch, kwargs, match):
    import dymu_rt.evaluate.controller as ctl

    def boom(*a, **k):
        raise AssertionError("evaluation started before the arguments were checked")

    monkeypatch.setattr(ctl, "make_split", boom)
    with pytest.raises(ValidationError, match=match):
        evaluate_controller(eval_run, **{"progress": False, **kwargs})


def test_eval_plots_written(report, eval_run, tmp_path):
    rep = dict(report)
    files = write_eval_plots(eval_run, rep, tmp_path, trees=["0.6,0.2,0.2;0.5", "1,0,0;1"])
    names = sorted(p.split("/")[-1] for p in files)
    assert names == ["controllability.png", "resource_map.png", "resource_map_points.png", "trees.png"]
    for f in files:
        data = open(f, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    _, _, edge, _ = RunDir(eval_run).load_all()
    assert [(t["r"], t["c"]) for t in rep["trees"]] == [([0.6, 0.2, 0.2], 0.5), ([1.0, 0.0, 0.0], 1.0)]
    for t in rep["trees"]:
        expect = edge.architecture(torch.tensor(t["r"]), torch.tensor(t["c"]))
        assert t["parents"] == expect.tolist()
    # Default trees: uniform and skewed r at c = 0 and 1.
    write_eval_plots(eval_run, rep, tmp_path / "default")
    assert [t["c"] for t in rep["trees"]] == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("spec, match", [("0.5,0.5,0", "R;C"), ("2,0,0;0.5", "sums to 2"),
                                         ("0.5,0.5;0.5", "2 entries"), ("1,0,0;1.5", "outside"),
                                         ("1,0,0;x", "not a number")])
def test_tree_specs_are_validated(spec, match):
    with pytest.raises(ValidationError, match=match):
        parse_tree_spec(spec, 3)
    assert parse_tree_spec(" 0.6, 0.2,0.2 ; 0.5", 3).c == 0.5


def test_cli_eval_json(capsys, eval_run, tmp_path):
    code, out, err = _cli(capsys, "eval", str(eval_run), "--json", "--n-r", "2", "--n-val", "3",
                          "--n-cost", "4", "--plots", str(tmp_path), "--tree", "0.6,0.2,0.2;0.5")
    assert code == 0, err
    d = json.loads(out)
    for key in ("run", "preset", "tasks", "n_val", "reference_point", "reference_source", "table",
                "controllability", "single_task", "controller_params", "distinct_trees", "units",
                "plots", "trees"):
        assert key in d, key
    assert "preferences" not in d                      # kept out of stdout, written to report.json
    assert d["reference_source"] == "preset synth-nyu" and d["n_val"] == 3
    assert {row["method"] for row in d["table"]} == {"DYMU (ours)", "DYMU w/o adaptation", "PHN-BN",
                                                     "single-task (anchor)"}
    assert {row["c"] for row in d["table"]} == {0.0, 1.0, None}
    for row in d["table"]:
        assert {"hv", "uniformity", "params", "gmacs", "outside_reference"} <= set(row)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["preferences"]) == 4 and saved["table"] == d["table"]
    assert d["trees"][0]["r"] == [0.6, 0.2, 0.2]
    assert all((tmp_path / f.split("/")[-1]).stat().st_size > 0 for f in d["plots"])


def test_cli_eval_table_names_the_reference(capsys, eval_run, tmp_path):
    code, out, err = _cli(capsys, "eval", str(eval_run), "--n-r", "1", "--n-val", "2", "--n-cost", "2",
                          "--c", "0.5", "--plots", str(tmp_path), "--reference", "50,50,50")
    assert code == 0, err
    assert "HV reference point: 50, 50, 50 (user)" in out and "DYMU w/o adaptation" in out


@pytest.mark.parametrize("args, match", [
    (["--n-cost", "0"], "--n-cost 0"),
    (["--n-r", "0"], "--n-r 0"),
    (["--grid", "0.5", "--c", "0.5"], "--c-grid"),
    (["--c-grid", "0.5"], "--grid only"),
    (["--c", "0,2"], "outside"),
    (["--reference", "1,2"], "2 values, expected 3"),
    (["--reference", "a,b,c"], "comma-separated numbers"),
    (["--tree", "2,0,0;0.5"], "sums to 2"),
])
def test_cli_eval_refuses_bad_input_before_evaluating(capsys, eval_run, tmp_path, args, match):
    code, out, err = _cli(capsys, "eval", str(eval_run), "--plots", str(tmp_path / "p"), *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], err
    assert not (tmp_path / "p").exists()              # nothing evaluated, nothing written
