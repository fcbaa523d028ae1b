"""AdaShare (Sun et al., NeurIPS 2020): eqs. 3-5, curriculum, temperature, lowering, IR round trip."""

import numpy as np
import pytest
import torch

from dymu_rt.bundle.paths import TOPOLOGY_ID_RE
from dymu_rt.models.graph import StaticGraph, materialize_graph
from dymu_rt.models.adashare import AdaShareNet, lower_policy
from dymu_rt.training.adashare import (curriculum_open, sample_policy, select_weights, sharing_loss, sparsity_loss,
                                       temperature)


def test_sparsity_loss_is_eq3_sum_of_log_alpha():
    alpha = torch.tensor([[0.5, 0.25], [1.0, 0.125]])
    assert float(sparsity_loss(alpha)) == pytest.approx(np.log(0.5) + np.log(0.25) + 0 + np.log(0.125))


def test_sharing_loss_is_eq4_layer_weighted_l1_bottom_heaviest():
    # L = 2 blocks, K = 2 tasks; weights (L - l)/L = 1 for block 0, 1/2 for block 1;
    # ordered pairs (k1, k2) count each unordered pair twice.
    alpha = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    expected = 2 * (1.0 * 0.8 + 0.5 * 0.4)
    assert float(sharing_loss(alpha)) == pytest.approx(expected)
    # The same disagreement costs more at the bottom than at the top.
    bottom = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    top = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    assert float(sharing_loss(bottom)) > float(sharing_loss(top))
    assert float(sharing_loss(torch.full((3, 4), 0.3))) == 0.0


def test_curriculum_opens_the_last_blocks_first():
    assert curriculum_open(0, 4).tolist() == [False, False, False, True]
    assert curriculum_open(2, 4).tolist() == [False, True, True, True]
    assert curriculum_open(3, 4).all() and curriculum_open(10, 4).all()


def test_temperature_anneals_from_5_towards_0():
    assert temperature(0, 100) == pytest.approx(5.0)
    assert temperature(100, 100, tau_final=0.1) == pytest.approx(0.1)
    taus = [temperature(s, 100) for s in range(0, 101, 10)]
    assert all(a > b for a, b in zip(taus, taus[1:]))


def test_closed_and_unskippable_blocks_are_executed(tiny_preset):
    net = AdaShareNet(tiny_preset)
    with torch.no_grad():
        net.policy_logits[..., 0] = -5.0            # strongly prefer skipping everywhere
    skippable = net.skippable.numpy()
    # The paper nets' last branchable layer is R-ASPP: no shortcut, so it cannot be skipped.
    assert not skippable[-1] and skippable.any()
    last = int(np.flatnonzero(skippable)[-1])          # the last skippable block
    open_ = curriculum_open(0, net.num_blocks, net.skippable)
    assert open_.tolist() == [b == last for b in range(net.num_blocks)]
    v = select_weights(net, 0.5, open_)
    others = [b for b in range(net.num_blocks) if b != last]
    assert torch.all(v[others] == 1.0)                 # closed by the curriculum or unskippable
    assert float(v[last].max().detach()) < 1.0         # the open block samples
    # The curriculum counts skippable blocks only: epoch k opens the last k + 1 of them.
    n_skip = int(skippable.sum())
    assert curriculum_open(n_skip - 1, net.num_blocks, net.skippable).tolist() == skippable.tolist()
    pol = sample_policy(net, torch.Generator().manual_seed(0))
    assert np.all(pol[~skippable] == 1)


def test_lowering_shares_prefixes_and_skips_blocks(tiny_preset):
    net = AdaShareNet(tiny_preset)
    B = net.num_blocks
    same = np.ones((B, 3), dtype=int)
    g = lower_policy(net, same)
    assert len(g.nodes) == 1 + B                      # hard sharing: one path, computed once
    pol = np.ones((B, 3), dtype=int)
    last_id = max(b for b in range(B) if net.shortcuts[b] == "")
    assert last_id >= B - 2                            # before R-ASPP (never skipped)
    pol[last_id, 1] = 0                                # task 1 skips the last identity block
    pol[1, 2] = 0                                      # task 2 diverges at block 1
    g = lower_policy(net, pol)
    names = {h.task: h.top for h in g.heads}
    assert len(set(names.values())) == 3
    # Task 2 runs blocks 2.. on its own input with the *same* modules: weights shared.
    assert "blocks.2" in g.shared_modules()
    assert StaticGraph.from_json(g.to_json()) == g and g.method == "adashare"
    # A bundle's topology id (dymu_rt.bundle.paths): 8-64 lowercase hex digits.
    assert TOPOLOGY_ID_RE.fullmatch(g.id) and g.id != lower_policy(net, same).id


def test_round_trip_graph_module_and_onnx_equal_the_training_forward(tiny_preset):
    """IR round trip: the training-time forward == GraphModule == folded ONNX (1e-4)."""
    import onnxruntime as ort

    from dymu_rt.compile.export import export_tree_model
    from dymu_rt.compile.fold_modules import fold_bn

    torch.manual_seed(0)
    net = AdaShareNet(tiny_preset)
    x = torch.rand(2, 3, *tiny_preset.input_size)
    net.train()
    with torch.no_grad():
        net(x)                                         # non-trivial BN running statistics
    net.eval()
    rng = np.random.default_rng(0)
    for _ in range(3):
        pol = (rng.random((net.num_blocks, 3)) < 0.6).astype(int)
        with torch.no_grad():
            ref = net(x, torch.as_tensor(pol, dtype=torch.float32))
        gm = materialize_graph(net, lower_policy(net, pol), tiny_preset.mean, tiny_preset.std)
        with torch.no_grad():
            out = dict(zip(gm.task_names, gm(x)))
        for t in ref:
            assert torch.allclose(ref[t], out[t], atol=1e-5), t
        model = export_tree_model(fold_bn(gm), tuple(tiny_preset.input_size), list(gm.task_names))
        names = [i.name for i in model.graph.initializer]
        assert len(names) == len(set(names))
        onnx_out = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x.numpy()})
        for t, o in zip(gm.task_names, onnx_out):
            assert np.abs(ref[t].numpy() - o).max() < 1e-4, t


def test_a_dymu_tree_lowers_to_the_same_static_graph_ir(tiny_preset):
    """The static graph generalizes the tree IR: a lowered tree runs like MaterializedTree."""
    from dymu_rt.compile.architecture import materialize
    from dymu_rt.models.graph import lower_tree

    torch.manual_seed(1)
    anchor = tiny_preset.build().eval()
    L, N = anchor.num_layers, anchor.num_tasks
    parents = np.tile(np.arange(N), (L, 1))
    parents[3:, :] = 0                                  # every task branches off stream 0 at layer 3
    x = torch.rand(2, 3, *tiny_preset.input_size)
    gm = materialize_graph(anchor, lower_tree(anchor, parents), tiny_preset.mean, tiny_preset.std)
    with torch.no_grad():
        a, b = materialize(anchor, parents)(x), gm(x)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(a, b))
    assert not lower_tree(anchor, parents).shared_modules()   # a tree never reuses a node
