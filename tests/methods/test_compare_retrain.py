"""``dymu-rt compare --retrain`` (the paper's Δ_T, DYMU Table 5 / A-1; dymu_rt/training/retrain.py):
the DYMU trees of uniform r trained again as static nets, on a tiny random run, 3 steps each.

What can fail here: the retrained net is not the tree (params / MACs), training did not move
the tree's weights (or moved nodes outside it), the Δ_T beside the deployed tree's is not the
retrained row's Δ_T or not computed from the retrained net's metrics, a second compare or a
resumed kill trains again from step 0, a resumed run ends elsewhere than an uninterrupted
one, a bad input gets a traceback instead of one error line. Cost: ~25 s on one core."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))

from run_fixture import make_tiny_run  # noqa: E402

from dymu_rt.run.layout import RunDir  # noqa: E402

STEPS = 3
FAST = dict(n_val=2, threads=1, rounds=1, iters=1, warmup=0, progress=False)


def _uniform_tree(run: RunDir, c: float) -> np.ndarray:
    n = len(run.preset().tasks)
    with torch.no_grad():
        return run.load_edge_hypernet().architecture(torch.full((n,), 1.0 / n), torch.tensor(c))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from dymu_rt.app.compare import compare_runs

    path = make_tiny_run(tmp_path_factory.mktemp("retrain") / "dymu")
    return path, compare_runs([path], retrain=True, retrain_steps=STEPS, **FAST)


def _rows(rep):
    return {r["label"]: r for r in rep["rows"]}


def test_retrained_rows_follow_the_deployed_trees_and_are_the_trees(compared):
    from dymu_rt.compile.architecture import materialize
    from dymu_rt.models.graph import graph_cost

    path, rep = compared
    run = RunDir(path)
    rows = _rows(rep)
    assert list(rows) == ["single-task", "single-task retrained (control)", "DYMU c=0 (uniform r)",
                          "DYMU c=0 retrained (uniform r)", "DYMU c=1 (uniform r)", "DYMU c=1 retrained (uniform r)"]
    anchor = run.load_anchor()
    for c in (0, 1):
        dep, ret = rows[f"DYMU c={c} (uniform r)"], rows[f"DYMU c={c} retrained (uniform r)"]
        # Exactly the tree's architecture: the deployed row's params and MACs, and the tree's own cost.
        tree = graph_cost(materialize(anchor, _uniform_tree(run, float(c))), tuple(run.preset().input_size))
        assert (ret["params"], ret["macs"]) == (dep["params"], dep["macs"]) == (tree.params, tree.macs)
        assert ret["retrain_of"] == dep["label"]
        assert ret["retrain"] == {"step": STEPS, "batch": run.preset().train.anchor_batch, "init": "anchor"}
        assert ret["budget"].startswith(f"retrain {STEPS} steps x batch") and "edge" in ret["budget"]
        # Built as a static bundle and timed through the runtime like the other fixed rows.
        assert ret["binding"] == "static" and ret["timed"]["bundle"] == "static" and ret["latency_ms"]["n"] == 1
    # The fixture's c = 0 and c = 1 trees differ (else this test would compare one tree twice).
    assert rows["DYMU c=0 (uniform r)"]["macs"] != rows["DYMU c=1 (uniform r)"]["macs"]
    # The control: the N single-task streams retrained the same way, the single-task row's architecture.
    ctl = rows["single-task retrained (control)"]
    assert ctl["retrain_of"] == "single-task" and (ctl["params"], ctl["macs"]) == (rows["single-task"]["params"],
                                                                                   rows["single-task"]["macs"])
    assert ctl["retrain"]["step"] == STEPS and ctl["budget"].startswith(f"retrain {STEPS} steps") and \
        "edge" not in ctl["budget"]


def test_training_moved_the_tree_and_nothing_else(compared):
    from dymu_rt.core.tree import canonicalize, used_nodes
    from dymu_rt.training.retrain import retrain_tree

    path, _ = compared
    run = RunDir(path)
    anchor = run.load_anchor()
    from dymu_rt.core.tree import identity_table

    for parents in (_uniform_tree(run, 0.0), _uniform_tree(run, 1.0),
                    identity_table(anchor.num_layers, anchor.num_tasks)):
        net, summary = retrain_tree(run, parents, steps=STEPS, progress=False)     # finished: loaded
        assert summary["done"] and summary["step"] == STEPS and summary["init"] == "anchor"
        used = used_nodes(canonicalize(parents))
        for l in range(anchor.num_layers):
            for j in range(anchor.num_tasks):
                a = dict(anchor.streams[j][l].named_parameters())
                moved = [k for k, v in net.streams[j][l].named_parameters() if not torch.equal(v, a[k])]
                if used[l, j]:
                    assert moved, f"node ({l}, {j}) of the tree kept its anchor weights"
                else:
                    assert not moved, f"node ({l}, {j}) is not in the tree but changed: {moved[:3]}"
        for t in anchor.task_names:
            assert any(not torch.equal(v, dict(anchor.heads[t].named_parameters())[k])
                       for k, v in net.heads[t].named_parameters())


def test_retrained_delta_t_column_is_the_retrained_nets_delta_t(compared):
    from dymu_rt.evaluate.comparison import compare_markdown, delta_t, plot_compare
    from dymu_rt.training.common import make_split, make_tasks
    from dymu_rt.training.evaluation import evaluate_tree
    from dymu_rt.training.retrain import retrain_tree

    path, rep = compared
    run = RunDir(path)
    rows = _rows(rep)
    tasks = make_tasks(run.preset())
    val = make_split(run.preset(), "synth", "val", n=2, seed=0)
    single = evaluate_tree(run.load_anchor(), tasks, val, None, None)
    md = compare_markdown(rep).splitlines()
    head = [h.strip() for h in md[0].strip("|").split("|")]
    col = head.index("retrained Δ_T %")
    assert col == head.index("Δ_T %") + 1
    from dymu_rt.core.tree import identity_table

    pairs = [(f"DYMU c={c} (uniform r)", f"DYMU c={c} retrained (uniform r)", _uniform_tree(run, float(c)))
             for c in (0, 1)] + [("single-task", "single-task retrained (control)",
                                  identity_table(run.load_anchor().num_layers, len(tasks)))]
    for dep_label, ret_label, parents in pairs:
        ret = rows[ret_label]
        # The row's metrics are the retrained net's, recomputed here from its checkpoint.
        net, _ = retrain_tree(run, parents, steps=STEPS, progress=False)
        mine = evaluate_tree(None, tasks, val, forward=lambda x: net(x, parents))
        for t in tasks:
            assert mine[t.name][t.primary_metric] == pytest.approx(ret["metrics"][t.name][t.primary_metric],
                                                                   rel=1e-5, abs=1e-6)
        want = delta_t(ret["metrics"], single, tasks)["mean"]
        assert ret["delta_t"]["mean"] == pytest.approx(want, rel=1e-9)
        dep = rows[dep_label]
        assert dep["retrained_delta_t"] == ret["delta_t"]["mean"]
        line = next(ln for ln in md if ln.startswith(f"| {dep_label} |"))
        assert [x.strip() for x in line.strip("|").split("|")][col] == f"{want:+.2f}"
        # the deployed tree's own Δ_T is not the retrained one's
        assert dep["delta_t"]["mean"] != ret["delta_t"]["mean"]
    assert [r["label"] for r in rep["rows"] if "retrained_delta_t" in r] == [d for d, _, _ in pairs[2:] + pairs[:2]]
    png = plot_compare(rep, path / "cmp.png")
    assert png.stat().st_size > 1000


def test_a_second_compare_reuses_the_finished_retrain(compared, monkeypatch):
    import dymu_rt.training.retrain as retrain
    from dymu_rt.app.compare import compare_runs

    path, rep = compared

    def no_training(*a, **k):
        raise AssertionError("a finished retrain was trained again")

    monkeypatch.setattr(retrain, "_loop", no_training)
    again = _rows(compare_runs([path], retrain=True, retrain_steps=STEPS, **FAST))
    for label, row in _rows(rep).items():
        assert again[label]["delta_t"]["mean"] == pytest.approx(row["delta_t"]["mean"], abs=1e-9)


def test_a_killed_retrain_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    from dymu_rt.training.retrain import retrain_tree, stage_name

    killed, whole = (RunDir(make_tiny_run(tmp_path / k)) for k in ("killed", "whole"))
    parents = _uniform_tree(killed, 0.0)
    net, state = retrain_tree(killed, parents, steps=4, save_every=2, progress=False, stop_after=2)
    assert net is None and state == {"done": False, "step": 2}
    seen = []
    net, summary = retrain_tree(killed, parents, steps=4, save_every=2, progress=False, on_step=seen.append)
    assert seen == [3, 4] and summary["done"]
    assert not (killed.path / "state" / f"{stage_name(parents, 'anchor', 4)}.json").exists()
    ref, _ = retrain_tree(whole, parents, steps=4, save_every=2, progress=False)
    for (k, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    seen.clear()
    retrain_tree(killed, parents, steps=4, save_every=2, progress=False, on_step=seen.append)
    assert seen == []                                              # finished: reused, not retrained


def test_bad_inputs_get_one_error_line(tmp_path, capsys):
    from cli_helpers import run_cli

    from dymu_rt.run.layout import STAGES

    dymu = make_tiny_run(tmp_path / "dymu")
    no_ctrl = make_tiny_run(tmp_path / "anchor-only")
    cfg = RunDir(no_ctrl).read_config()
    for s in STAGES[1:]:
        cfg["stages"][s] = {"done": False}
    import json

    (no_ctrl / "config.json").write_text(json.dumps(cfg))
    cases = [((no_ctrl, "--retrain"), "has not finished training"),
             ((tmp_path / "missing", "--retrain"), "not found"),
             ((dymu, "--retrain", "--retrain-init", "imagenet"), "--retrain-init 'imagenet' is not valid"),
             ((dymu, "--retrain", "--retrain-steps", "0"), "--retrain-steps 0 is not valid"),
             ((dymu, "--retrain", "--retrain-steps", str(10**12)), "is not valid; expected an integer from 1"),
             ((dymu, "--retrain-steps", "5"), "--retrain-steps applies to compare --retrain only"),
             ((dymu, "--retrain", "--save-every", "0"), "--save-every")]
    for args, msg in cases:
        code, out, err = run_cli(capsys, "compare", *map(str, args), "--n-val", "2", "--rounds", "1",
                                 "--iters", "1", "--out", str(tmp_path / "out"))
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], (args, err)
        assert "Traceback" not in out + err
    assert not (tmp_path / "out").exists()
    assert not any(k.startswith("retrain-") for k in RunDir(dymu).read_config()["stages"])


def test_base_init_starts_from_the_weights_the_anchor_started_from(tmp_path):
    """--retrain-init base (the paper's †): the run's shared pre-training backbone in every
    stream, not the anchor's fine-tuned streams; one step moves each weight by ~lr only."""
    from dymu_rt.core.tree import canonicalize, used_nodes
    from dymu_rt.training.anchor import PRETRAIN
    from dymu_rt.run.layout import save_module
    from dymu_rt.training.retrain import retrain_tree

    run = RunDir(make_tiny_run(tmp_path / "dymu"))
    assert run.preset().train.anchor_init == "shared"
    torch.manual_seed(5)
    pre = run.preset().build()
    save_module(pre, run.module_path("anchor_pretrain"))
    run.mark_done(PRETRAIN, {"step": 0, "fixture": True})
    anchor = run.load_anchor()
    parents = _uniform_tree(run, 1.0)
    net, summary = retrain_tree(run, parents, init="base", steps=1, progress=False)
    assert summary["init"] == "base" and summary["step"] == 1
    used = used_nodes(canonicalize(parents))
    for l, j in zip(*np.nonzero(used)):
        w = torch.cat([p.flatten() for p in net.streams[j][l].parameters()])
        start = torch.cat([p.flatten() for p in pre.streams[0][l].parameters()])
        tuned = torch.cat([p.flatten() for p in anchor.streams[j][l].parameters()])
        assert (w - start).norm() < 0.5 * (w - tuned).norm(), (l, j)


def test_base_retrain_of_the_identity_tree_is_the_anchor_stage_again(tmp_path, tiny_preset):
    """The retrain is the anchor stage's recipe (optimizer, schedule, batch, data stream, seed,
    loss with its L2-SP term; default length anchor_steps): retraining the N single-task streams from where the anchor
    started reproduces the anchor (on synth-nyu at full length too: compare --retrain-init base's
    control row has the anchor's metrics exactly)."""
    from dymu_rt.core.tree import identity_table
    from dymu_rt.training.anchor import train_anchor
    from dymu_rt.training.retrain import retrain_tree

    # the synth presets' L2-SP is on (issue 22, fourth session): the retrain must carry it too
    # (without it this fails; compare --retrain-init base's control row was +1.50 %, not 0)
    assert tiny_preset.train.anchor_l2sp > 0
    run = RunDir(tmp_path / "run")
    run.init(tiny_preset, data="synth", extra={"data_options": {"seed": 3, "n_train": 8, "n_val": 4}})
    train_anchor(run, seed=3, n_train=8, n_val=4, progress=False)
    anchor = run.load_anchor()
    net, summary = retrain_tree(run, identity_table(anchor.num_layers, anchor.num_tasks), init="base",
                                progress=False)
    assert summary["step"] == tiny_preset.train.anchor_steps
    mine, ref = net.state_dict(), anchor.state_dict()
    for k in ref:
        assert torch.allclose(mine[k].float(), ref[k].float(), atol=1e-6), k
