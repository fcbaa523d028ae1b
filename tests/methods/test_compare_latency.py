"""``dymu-rt compare`` times every row through the deployed runtime (dymu_rt/app/compare.py):
DYMU rows in a grid bundle with affine binding, switched by set_preference; the fixed
architectures (single-task, PHN-BN, AdaShare) as static bundles. A spy on the Runtime's run
path counts the timed calls, so timing anything else (e.g. a separately built ORT session)
fails here; no wall-clock number is asserted."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))

from run_fixture import add_phn_bn, make_static_run, make_tiny_run  # noqa: E402

from dymu_rt.run.layout import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    dymu = make_tiny_run(root / "dymu")
    add_phn_bn(dymu)
    return dymu, make_static_run(root / "ada", "adashare")


def test_every_row_is_timed_through_the_runtime_in_its_deployed_binding(runs, monkeypatch):
    from dymu_rt.app.compare import compare_runs
    from dymu_rt.runtime.runtime import Runtime

    seen = []
    real_run = Runtime._run

    def spy(self, state, x):
        seen.append((state.topology, state.binding, state.engine.mode, bool(self.static)))
        return real_run(self, state, x)

    monkeypatch.setattr(Runtime, "_run", spy)
    rounds, iters, warmup = 2, 3, 1
    rep = compare_runs(list(runs), n_val=2, threads=1, rounds=rounds, iters=iters, warmup=warmup, progress=False)
    rows = {r["label"]: r for r in rep["rows"]}
    assert list(rows) == ["single-task", "PHN-BN (uniform r)", "DYMU c=0 (uniform r)", "DYMU c=1 (uniform r)",
                          "AdaShare"]
    # Every timed run went through Runtime._run: warmup + rounds x iters per row, nothing else.
    assert len(seen) == len(rows) * (warmup + rounds * iters)
    for label in ("DYMU c=0 (uniform r)", "DYMU c=1 (uniform r)"):
        t = rows[label]["timed"]
        # the steady state: the second tier's folded engine of the preference (docs/runtime-tiers.md)
        assert rows[label]["binding"] == "folded" and t["bundle"] == "grid" and not t["static"]
        assert t["tier"] == "folded" and t["binding_mode"] == "folded" and t["weight_kind"] == "folded"
        assert t["bound_slots"] > 0
        assert t["binding"] == "exact" and t["matches_evaluated"], t       # the evaluated tree was timed
        assert (t["topology"], "exact", "folded", False) in seen
    for label in ("single-task", "PHN-BN (uniform r)", "AdaShare"):
        t = rows[label]["timed"]
        assert rows[label]["binding"] == "static" and t["bundle"] == "static" and t["static"]
        assert t["binding"] == "static" and t["bound_slots"] == 0
        assert (t["topology"], "static", t["binding_mode"], True) in seen
    for r in rep["rows"]:
        assert r["timed"]["threads"] == 1 and r["timed"]["profile"] == "x86-64-cpu"
        assert r["latency_ms"]["n"] == rounds * iters and r["latency_ms"]["p50"] > 0
    assert rep["latency_protocol"]["path"].startswith("dymu_rt.runtime.Runtime.timed_call")
    assert set(rep["latency_protocol"]["bindings"]) == {"folded", "affine", "static"}
    # PHN-BN shares its encoder: fewer parameters than the N single-task streams.
    assert rows["PHN-BN (uniform r)"]["params"] < rows["single-task"]["params"]
    # Every row states its training budget (issue 22), from its run's stage lengths.
    assert rows["single-task"]["budget"].startswith(("anchor ", "shared pre-training "))
    assert "PHN-BN" in rows["PHN-BN (uniform r)"]["budget"]
    assert "edge" in rows["DYMU c=0 (uniform r)"]["budget"] and "weight" in rows["DYMU c=1 (uniform r)"]["budget"]
    assert rows["AdaShare"]["budget"].startswith("adashare: warm-up")
    from dymu_rt.evaluate.comparison import compare_markdown

    assert "training budget" in compare_markdown(rep).splitlines()[0]


def test_static_rows_state_the_stage_lengths_their_run_trained(tmp_path):
    """A static row's budget is the stage lengths its run stored (overrides included): the
    final stage defaults to the preset's anchor steps, not its weight steps (compare said
    "retrain 300" for a 600-step retrain before)."""
    from run_fixture import tiny_preset

    from dymu_rt.methods import get_method

    preset = tiny_preset()
    over = {"anchor_steps": 7, "edge_steps": 5, "weight_steps": 9, "anchor_batch": 2}
    for method, flow, final in (("adashare", None, "retrain"), ("dag", 3, "fine-tune")):
        run = RunDir(tmp_path / method)
        m = get_method(method)
        run.init(preset, data="synth", extra=m.new_run_extra(preset, over, flow))
        assert m.budget(run) == f"{method}: warm-up 7 + search 5 + {final} 9 steps x batch 2"
    t = preset.train
    assert t.weight_steps != t.anchor_steps                  # else the default case below proves nothing
    run = RunDir(tmp_path / "dag-default")
    run.init(preset, data="synth", extra=get_method("dag").new_run_extra(preset, {}, 3))
    assert get_method("dag").budget(run) == (f"dag: warm-up {t.anchor_steps} + search {t.edge_steps} + "
                                              f"fine-tune {t.anchor_steps} steps x batch {t.anchor_batch}")


def test_phn_bn_static_bundle_computes_the_phn_forward(runs, tmp_path):
    """The PHN-BN row's deployed form (shared tree, heads on stream 0, BN of uniform r folded)
    runs through the runtime equal to the training-time forward within 1e-4."""
    from dymu_rt.app.compare import contenders
    from dymu_rt.compile.build import StaticLowering, write_bundle
    from dymu_rt.runtime import Runtime
    from dymu_rt.training.phn import load_phn_bn

    dymu, _ = runs
    run = RunDir(dymu)
    row = next(r for r in contenders([run]) if r["label"].startswith("PHN-BN"))
    dep = row["deploy"]
    x = torch.rand(2, 3, *run.preset().input_size, generator=torch.Generator().manual_seed(0))
    phn = load_phn_bn(run)
    r = torch.full((3,), 1 / 3)
    with torch.no_grad():
        want = phn(x, r)
    write_bundle(StaticLowering(run.preset(), run.read_config(), row["module"], dep["graph"], dep["method"],
                                dep["weights_id"], dymu), tmp_path / "b", progress=False)
    rt = Runtime.open(tmp_path / "b")
    rt.set_preference(None, None)
    got = rt.infer(x.numpy())
    rt.close()
    for task, v in want.items():
        np.testing.assert_allclose(got[task], v.numpy(), atol=1e-4, rtol=1e-4)
