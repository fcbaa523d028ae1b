"""AnchorNet executes any tree: identity = per-stream nets, dead nodes skipped, BN modulation."""

import numpy as np
import pytest
import torch

from dymu_rt.core.errors import ValidationError
from dymu_rt.core.tree import canonicalize, identity_table, num_used_nodes, topology_id


def _random_tree(rng, L, N):
    p = rng.integers(0, N, size=(L, N))
    p[0] = np.arange(N)
    return p


def test_identity_tree_equals_per_stream_forward(tiny_preset):
    net = tiny_preset.build().eval()
    x = torch.rand(2, 3, 32, 32)
    out = net(x)
    h = net.run_stem(net.normalize(x))          # the shared stem runs once, before every stream
    for j, t in enumerate(net.tasks):
        cur, low = h, None
        for l in range(net.num_layers):
            cur = net.streams[j][l](cur)
            if l == net.low_level_layer:
                low = cur
        ref = net.heads[t.name](cur, low, (32, 32))
        assert torch.allclose(out[t.name], ref, atol=1e-6)
    assert net.executed_nodes == net.num_layers * net.num_tasks


def test_cross_task_tree_runs_and_skips_dead_nodes(tiny_preset):
    net = tiny_preset.build().eval()
    L, N = net.num_layers, net.num_tasks
    p = identity_table(L, N)
    p[3] = [0, 0, 0]          # all tasks branch off stream 0 above layer 2
    p[6] = [0, 1, 1]          # task 2 shares task 1's node at layer 5
    x = torch.rand(1, 3, 32, 32)
    out = net(x, p)
    # Stream 0 runs to layer 2 only once; streams 1, 2 are dead below layer 3.
    expected = num_used_nodes(p)
    assert net.executed_nodes == expected < L * N
    assert canonicalize(p)[1, 1] == -1 and canonicalize(p)[1, 0] == 0
    # Changing a dead node's weights cannot change the output.
    with torch.no_grad():
        for prm in net.streams[1][1].parameters():
            prm.add_(1.0)
    out2 = net(x, p)
    for k in out:
        assert torch.equal(out[k], out2[k])


def test_soft_forward_with_one_hot_nu_equals_hard(tiny_preset):
    net = tiny_preset.build().eval()
    rng = np.random.default_rng(0)
    x = torch.rand(2, 3, 32, 32)
    for _ in range(3):
        p = _random_tree(rng, net.num_layers, net.num_tasks)
        nu = [torch.nn.functional.one_hot(torch.as_tensor(p[l]), net.num_tasks).float()
              for l in range(1, net.num_layers)]
        hard, soft = net(x, p), net.forward_soft(x, nu)
        for k in hard:
            assert torch.allclose(hard[k], soft[k], atol=1e-5)


def test_bn_deltas_modulate_exactly_the_slots(tiny_preset):
    net = tiny_preset.build().eval()
    x = torch.rand(1, 3, 32, 32)
    base = net(x)
    d = torch.zeros(net.bn_delta_size)
    assert torch.equal(net(x, bn_deltas=d)["depth"], base["depth"])
    # A slot of the top node of the last stream, then one of the last task's head (the light
    # decoder's BNs are modulated too, layer == L): each moves that task's output only.
    top = [s for s in net.bn_layout if s.layer == net.num_layers - 1 and s.stream == net.num_tasks - 1]
    head = net.bn_layout[-1]
    assert top and head.layer == net.num_layers and head.name.startswith("head_depth.")
    for slot in (top[-1], head):
        d = torch.zeros(net.bn_delta_size)
        d[slot.offset + slot.channels: slot.offset + 2 * slot.channels] = 0.5   # Δβ
        out = net(x, bn_deltas=d)
        assert not torch.allclose(out["depth"], base["depth"])
        assert torch.equal(out["semseg"], base["semseg"])    # other streams untouched
    # The shared stem is not modulated: no slot lives in it.
    assert net.stem is not None and not any(s.name.startswith("stem") for s in net.bn_layout)
    offsets = [s.offset for s in net.bn_layout]
    assert offsets == sorted(offsets) and net.bn_delta_size == sum(2 * s.channels for s in net.bn_layout)
    assert len({s.name for s in net.bn_layout}) == len(net.bn_layout)


def test_bad_parent_tables_refused(tiny_preset):
    net = tiny_preset.build().eval()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValidationError, match="shape"):
        net(x, np.zeros((2, 3), dtype=int))
    p = identity_table(net.num_layers, net.num_tasks)
    p[2, 0] = 7
    with pytest.raises(ValidationError, match=r"\[-1, 3\)"):
        net(x, p)


def test_topology_ids_equal_iff_trees_equal():
    p = identity_table(5, 3)
    q = p.copy()
    q[4] = [0, 0, 0]
    q2 = q.copy()
    q2[2] = [0, 2, 1]            # differs only on nodes that are now dead (streams 1, 2 below 3)
    assert topology_id(q) == topology_id(q2)
    assert topology_id(p) != topology_id(q)
    assert topology_id(q, salt="a") != topology_id(q, salt="b")


# Every preset's construction and node shapes: tests/models/test_models_presets.py.
