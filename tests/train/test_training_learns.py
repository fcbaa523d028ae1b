"""Training learns (issue 28, problem 1): in every training stage the loss falls and the
trained weights move away from their seeded start; a trained edge hypernet gives cheaper
trees as c grows.

Before this file, a ``backward_step`` that computed gradients but never stepped the
optimizer passed all of tests/train/ and tests/methods/test_static_setup.py: those tests
compare a trainer with itself (resume, 1 vs 2 processes) or with a different random init.

A spy wraps ``backward_step`` where each trainer imported it and records, per call, the
loss and the optimizer's parameters before and after the step. Per stage:

* weights move: the parameters after the stage's last step differ from those before its
  first step (the seeded start);
* the loss falls: the mean of the last third of the stage's losses is below the mean of
  its first third. The anchor and the static methods fit a fixed 16-scene set; the
  controller stages sample a preference per step, so their losses are compared at a
  fixed preference instead (see the controller test).

Cost: ~30 s on an idle 2-core machine (not marked slow: it is the suite's only check that
training learns).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dymu_rt.training import adashare as adashare_mod
from dymu_rt.training import anchor as anchor_mod
from dymu_rt.training import controller as controller_mod
from dymu_rt.training import dag as dag_mod
from dymu_rt.methods import get_method
from dymu_rt.training import static
from dymu_rt.run.layout import RunDir
from dymu_rt.training.setup import backward_step as real_backward_step


class Spy:
    """Records every optimizer step: (stage, loss, params before, params after)."""

    def __init__(self) -> None:
        self.stage = "?"
        self.calls: list[tuple[str, float, list, list]] = []

    def __call__(self, loss, opt, scaler):
        opts = [opt] if isinstance(opt, torch.optim.Optimizer) else list(opt)
        params = [p for o in opts for g in o.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        real_backward_step(loss, opt, scaler)
        self.calls.append((self.stage, float(loss.detach()), before, [p.detach().clone() for p in params]))

    def of(self, stage):
        calls = [c for c in self.calls if c[0] == stage]
        assert len(calls) >= 6, f"stage {stage}: {len(calls)} optimizer steps recorded"
        return calls


@pytest.fixture
def spy(monkeypatch):
    s = Spy()
    for mod in (anchor_mod, controller_mod, adashare_mod, dag_mod):
        monkeypatch.setattr(mod, "backward_step", s)
    return s


def _moved(calls) -> float:
    """Largest |Δw| between the stage's seeded start and its end."""
    start, end = calls[0][2], calls[-1][3]
    return max(float((a - b).abs().max()) for a, b in zip(start, end) if a.numel())


def _falls(calls) -> tuple[float, float]:
    losses = [c[1] for c in calls]
    k = max(2, len(losses) // 3)
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


def test_anchor_and_static_methods_learn_in_every_stage(tmp_path, tiny_preset, spy):
    preset = tiny_preset.with_train(anchor_steps=24, anchor_batch=4, anchor_lr=3e-3)
    run = RunDir(tmp_path / "dymu")
    run.init(preset, data="synth")
    spy.stage = "anchor"
    anchor_mod.train_anchor(run, n_train=16, n_val=4, progress=False)
    steps = {"anchor_steps": 18, "edge_steps": 18, "weight_steps": 18, "anchor_batch": 4}
    stages = ["anchor"]
    for method, trainer in (("adashare", adashare_mod.train_adashare), ("dag", dag_mod.train_dag)):
        srun = RunDir(tmp_path / method)
        extra = get_method(method).new_run_extra(preset, steps, 2 if method == "dag" else None)
        srun.init(preset, data="synth", extra={"data_options": {"seed": 0, "n_train": 16, "n_val": 4}, **extra})
        names = []

        def on_step(stage, k, names=names, method=method):
            # Called after each step: the step just recorded belongs to ``stage``.
            tag = f"{method}/{stage}"
            last = spy.calls[-1]
            if last[0] == "?":
                spy.calls[-1] = (tag,) + last[1:]
            if tag not in names:
                names.append(tag)

        spy.stage = "?"
        trainer(srun, "synth", 0, 16, 4, progress=False, save_every=100, on_step=on_step)
        assert len(names) == len(static.STATIC_STAGES), names
        stages += names
    report = []
    for stage in stages:
        calls = spy.of(stage)
        moved = _moved(calls)
        first, last = _falls(calls)
        report.append(f"{stage}: moved {moved:.3g}, loss {first:.3f} -> {last:.3f}")
        assert moved > 1e-4, f"{stage}: the weights did not move from their seeded start"
        assert last < first, f"{stage}: the loss did not fall ({first:.4f} -> {last:.4f})"
    print("\n".join(report))


def _fixed_loss(anchor, tasks, batch, parents, deltas, r) -> float:
    from dymu_rt.training.common import weighted_task_loss

    with torch.no_grad():
        out = anchor(batch["image"], parents, deltas)
        loss, per = weighted_task_loss(tasks, out, batch)
    w = torch.as_tensor([t.loss_weight for t in tasks], dtype=torch.float32)
    return float((r * w * per).sum())


def test_controller_stages_learn(tmp_path, tiny_preset, spy):
    """Edge and weight hypernets move from their seeded start; the weight stage's loss at a
    fixed (r, c) on a fixed batch is lower with the trained BN deltas than with none (the
    hypernet's job: deltas that fit the anchor's BNs to the tree)."""
    from dymu_rt.training.common import make_split, make_tasks
    from dymu_rt.training.loader import collate

    preset = tiny_preset.with_train(anchor_steps=24, anchor_batch=4, anchor_lr=3e-3, edge_steps=12,
                                    weight_steps=24, controller_batch=4, controller_lr=3e-3, decay_every=1000)
    run = RunDir(tmp_path / "run")
    run.init(preset, data="synth")
    spy.stage = "anchor"
    anchor_mod.train_anchor(run, n_train=16, n_val=4, progress=False)
    spy.stage = "edge"
    controller_mod.train_edge(run, n_train=16, n_val=4, progress=False)
    spy.stage = "weight"
    controller_mod.train_weight(run, n_train=16, progress=False)
    for stage in ("edge", "weight"):
        assert _moved(spy.of(stage)) > 1e-4, f"{stage}: the hypernet did not move from its seeded start"

    _, anchor, edge, weight = run.load_all()
    anchor.eval()
    tasks = make_tasks(preset)
    data = make_split(preset, "synth", "train", n=8, augment=False, seed=0)
    batch = collate([data[i] for i in range(8)])
    r, c = torch.tensor([0.4, 0.3, 0.3]), torch.tensor(0.3)
    parents = edge.architecture(r, c)
    trained = _fixed_loss(anchor, tasks, batch, parents, weight(r, c), r)
    zero = _fixed_loss(anchor, tasks, batch, parents, torch.zeros_like(weight(r, c)), r)
    print(f"weight stage: fixed-(r,c) loss {zero:.4f} (no deltas) -> {trained:.4f} (trained)")
    assert trained < zero


def test_stage_1_cost_falls_with_c_on_a_problem_built_so_that_it_must(tmp_path, tiny_preset, monkeypatch):
    """The real stage-1 loop (edge hypernet, Gumbel sampling, branching regularizer Ω,
    optimizer) on a task loss replaced by one that wants every task on its own stream with
    a fixed weight: Ω's sharing term grows with c (c·λ_A·L_active), so the trained trees
    must use fewer nodes at c = 1 than at c = 0. A regularizer that ignores c, a hypernet
    that ignores its c input or an optimizer that never steps fails here."""
    from dymu_rt.core.tree import num_used_nodes

    real_sample = controller_mod.gumbel_softmax_sample
    seen = {}

    def sample(logits, temperature):
        seen["nu"] = real_sample(logits, temperature)
        return seen["nu"]

    def own_stream_loss(tasks, outputs, batch, r=None):
        own = torch.diagonal(seen["nu"], dim1=-2, dim2=-1)      # P(node i reads its own stream)
        return (1 - own).mean(), torch.zeros(len(tasks))

    def every_task_active(rng, n, eta=0.2, device=None, c_zero_share=0.0):
        # r with every task active (Dir(5): L_active has pairs to act on; Dir(0.2) mostly has
        # one active task and no c signal at all) and c at its two ends, so the c-weighting is
        # the only difference between the two halves of the training preferences.
        r = rng.dirichlet(np.full(n, 5.0))
        return (torch.tensor(r, dtype=torch.float32, device=device),
                torch.tensor(float(rng.integers(0, 2)), dtype=torch.float32, device=device))

    monkeypatch.setattr(controller_mod, "_sample_pref", every_task_active)
    monkeypatch.setattr(controller_mod, "gumbel_softmax_sample", sample)
    monkeypatch.setattr(controller_mod, "weighted_task_loss", own_stream_loss)
    # The identity prior is pinned to the generic default (4, learnable, constant in c): this
    # test isolates c's pathway through Ω. The synth presets' fixed prior of 8 that falls with c
    # (issue 22) is judged at full length
    # (docs/method-quality.md); on this toy problem (λ_A 30 against a task loss <= 1) it shares
    # every node at every c (11 used nodes at c = 0 and c = 1, also after 150 steps).
    preset = tiny_preset.with_train(anchor_steps=2, anchor_batch=2, edge_steps=60, controller_batch=2,
                                    controller_lr=1e-2, decay_every=1000, lambda_active=30.0, gumbel_every=0,
                                    identity_prior=4.0, identity_prior_learnable=True, identity_prior_c_slope=0.0)
    run = RunDir(tmp_path / "run")
    run.init(preset, data="synth")
    anchor_mod.train_anchor(run, n_train=4, n_val=2, progress=False)
    controller_mod.train_edge(run, n_train=4, n_val=2, progress=False)
    edge = run.load_all()[2]
    rs = [torch.tensor(v) for v in ([1 / 3, 1 / 3, 1 / 3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4])]
    nodes = {cv: float(np.mean([num_used_nodes(edge.architecture(rv, torch.tensor(cv))) for rv in rs]))
             for cv in (0.0, 0.25, 0.5, 0.75, 1.0)}
    print(f"stage 1: mean used nodes by c {nodes}")
    assert nodes[1.0] < nodes[0.0] - 2
    assert all(nodes[cv] < nodes[0.0] for cv in nodes if cv > 0)
