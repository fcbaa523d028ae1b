"""The flow-restricted DAG network (Choi & Im, CVPR 2023): flow restriction, eq. 9,
Algorithm 1, lowering and the IR round trip."""

import numpy as np
import pytest
import torch

from dymu_rt.models.graph import materialize_graph
from dymu_rt.models.dag import DagNet, DagSpec, allowed_edges, lower_masks
from dymu_rt.training.dag import flow_reduction, prune_to_paths, reachable, reduce_network, squeeze_loss


@pytest.mark.parametrize("n,m", [(8, 3), (8, 5), (8, 7), (5, 1)])
def test_flow_restriction_keeps_exactly_the_short_edges(n, m):
    edges = allowed_edges(n, m)
    assert all(1 <= i < j <= n and j - i <= m for i, j in edges)
    assert len(edges) == sum(min(m, j - 1) for j in range(1, n + 1))
    assert len(set(edges)) == len(edges)


def test_squeeze_loss_is_eq9_hinge_on_the_budget():
    gamma = torch.zeros(2, 6)                          # σ = 0.5: Σ = 3 per task
    assert float(squeeze_loss(gamma, 2.0)) == pytest.approx(2 * 1.0)
    assert float(squeeze_loss(gamma, 3.5)) == 0.0
    g = gamma.clone().requires_grad_(True)
    squeeze_loss(g, 2.0).backward()
    assert torch.all(g.grad > 0)                       # pushes every edge weight down


def test_dfs_reachability():
    psi = np.zeros((4, 4))
    psi[0, 1] = psi[1, 2] = 1
    assert reachable(psi, 0, 2) and not reachable(psi, 0, 3) and not reachable(psi, 2, 0)


def test_algorithm1_drops_weak_edges_and_keeps_reachability():
    # States 1..4 (0-based rows); a strong chain 1->2->3->4 and weak shortcuts.
    N = 4
    G = np.zeros((N, N))
    G[0, 1], G[1, 2], G[2, 3] = 0.9, 0.9, 0.9
    G[0, 2], G[1, 3] = 0.05, 0.05
    A = np.array([0.9, 0.1, 0.1, 0.1])                 # read-in to state 1
    B = np.array([0.1, 0.1, 0.1, 0.9])                 # read-out from state 4
    g, a, b = flow_reduction(G, A, B)
    assert a.tolist() == [1, 0, 0, 0] and b.tolist() == [0, 0, 0, 1]
    assert g[0, 2] == 0 and g[1, 3] == 0               # the weak shortcuts go
    assert g[0, 1] == g[1, 2] == g[2, 3] == 1          # the chain is what keeps 1 -> 4 reachable
    psi = np.zeros((N + 2, N + 2))
    psi[1:N + 1, 1:N + 1], psi[0, 1:N + 1], psi[1:N + 1, N + 1] = g, a, b
    assert reachable(psi, 0, N + 1)


def test_algorithm1_bounds_cut_states_outside_read_in_and_read_out():
    N = 5
    G = np.triu(np.full((N, N), 0.5), 1)
    A = np.array([0.1, 0.9, 0.1, 0.1, 0.1])            # N_α = state 2
    B = np.array([0.1, 0.1, 0.1, 0.9, 0.1])            # argmax B = state 4 (kept: inclusive bound)
    g, a, b = flow_reduction(G, A, B)
    assert g[0].sum() == 0 and g[:, 4].sum() == 0      # nothing from state 1, nothing into state 5
    assert a[0] == 0 and b[4] == 0


def test_prune_to_paths_drops_dead_ends():
    N = 3
    g = np.zeros((N, N), int)
    g[0, 1] = g[0, 2] = 1
    a, b = np.array([1, 0, 0]), np.array([0, 1, 0])    # state 3 leads nowhere
    g2, a2, b2 = prune_to_paths(g, a, b)
    assert g2[0, 1] == 1 and g2[0, 2] == 0 and a2.tolist() == [1, 0, 0] and b2.tolist() == [0, 1, 0]


def _trained_like(preset, flow):
    torch.manual_seed(flow)
    net = DagNet(preset, DagSpec(states=6, flow=flow, channels=8, low_channels=8))
    x = torch.rand(2, 3, *preset.input_size)
    net.train()
    with torch.no_grad():
        net(x)
        for p in net.upper_parameters():
            p.normal_(0, 2)
    return net.eval(), x


@pytest.mark.parametrize("flow", [1, 3, 5])
def test_round_trip_reduced_graph_equals_the_training_forward(tiny_preset, flow):
    """IR round trip: forward with the reduced masks == GraphModule == folded ONNX (1e-4)."""
    import onnxruntime as ort

    from dymu_rt.compile.export import export_tree_model
    from dymu_rt.compile.fold_modules import fold_bn

    net, x = _trained_like(tiny_preset, flow)
    masks = tuple(torch.as_tensor(m, dtype=torch.float32) for m in reduce_network(net))
    assert all(j - i <= flow for i, j in net.edge_list)
    with torch.no_grad():
        ref = net(x, masks)
        soft = net(x)                                   # the search forward runs too
    assert set(soft) == set(ref)
    graph = lower_masks(net, *masks)
    gm = materialize_graph(net, graph, tiny_preset.mean, tiny_preset.std)
    with torch.no_grad():
        out = dict(zip(gm.task_names, gm(x)))
    for t in ref:
        assert torch.allclose(ref[t], out[t], atol=1e-5), t
    model = export_tree_model(fold_bn(gm), tuple(tiny_preset.input_size), list(gm.task_names))
    onnx_out = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x.numpy()})
    for t, o in zip(gm.task_names, onnx_out):
        assert np.abs(ref[t].numpy() - o).max() < 1e-4, t


def test_lowering_sums_several_weighted_inputs(tiny_preset):
    net, _ = _trained_like(tiny_preset, 2)
    K, N, E = 3, net.spec.states, len(net.edge_list)
    A, B, G = np.zeros((K, N)), np.zeros((K, N)), np.zeros((K, E))
    A[:, 0] = A[:, 1] = 1                               # v0 into states 1 and 2
    G[:, net.edge_list.index((1, 2))] = 1               # and 1 -> 2: state 2 averages two inputs
    B[:, 1] = 1
    g = lower_masks(net, A, B, G)
    sums = [n for n in g.nodes if n.module is None]
    assert len(sums) == 1 and [w for _, w in sums[0].inputs] == [0.5, 0.5]   # 1/In (eq. 4), shared by tasks


def test_algorithm1_keeps_a_gamma_path_from_n_alpha_to_n_beta():
    """The stop condition is reachability of v_{N_β} from v_{N_α} through Γ̂ (Sec. 3.2), not
    read-in -> read-out: with read-in and read-out weights on every state, a single
    read-in -> state -> read-out shortcut would otherwise replace the whole network."""
    N = 5
    G = np.zeros((N, N))
    for i in range(N - 1):
        G[i, i + 1] = 0.3                               # weak chain 1 -> 2 -> ... -> 5
    G[0, 2] = 0.6                                       # a stronger skip 1 -> 3
    A = np.array([0.9, 0.6, 0.6, 0.6, 0.6])             # N_α = state 1, read-in everywhere
    B = np.array([0.6, 0.6, 0.6, 0.6, 0.9])             # argmax B = state 5, read-out everywhere
    g, a, b = flow_reduction(G, A, B)
    psi = np.zeros((N + 2, N + 2))
    psi[1:N + 1, 1:N + 1] = g
    assert reachable(psi, 1, N), g                      # v_1 still reaches v_5 through kept edges
    full = np.zeros((N + 2, N + 2))
    full[1:N + 1, 1:N + 1], full[0, 1:N + 1], full[1:N + 1, N + 1] = g, a, b
    assert reachable(full, 0, 1) and reachable(full, N, N + 1)   # entered at v_1, left at v_5
    # Weak read-ins / read-outs on the middle states and a weak skip go, lowest flow first;
    # the chain that carries v_1 -> v_5 stays.
    A = np.array([0.9, 0.1, 0.1, 0.1, 0.1])
    B = np.array([0.1, 0.1, 0.1, 0.1, 0.9])
    G[:] = 0
    for i in range(N - 1):
        G[i, i + 1] = 0.5
    G[0, 2] = 0.05
    g, a, b = flow_reduction(G, A, B)
    assert a.tolist() == [1, 0, 0, 0, 0] and b.tolist() == [0, 0, 0, 0, 1]
    assert g[0, 2] == 0 and all(g[i, i + 1] == 1 for i in range(N - 1))
