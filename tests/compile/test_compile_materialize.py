"""materialize(): a static module of the used nodes equals AnchorNet.forward on any tree."""

import numpy as np
import pytest
import torch

from dymu_rt.compile.architecture import materialize
from dymu_rt.compile.fold_modules import fold_bn
from dymu_rt.core.tree import canonicalize, identity_table, used_nodes


def _random_tree(rng, L, N):
    p = rng.integers(0, N, size=(L, N))
    p[0] = np.arange(N)
    return p


def _check(anchor, parents, deltas, x, folded=False):
    with torch.no_grad():
        ref = anchor(x, parents, deltas)
        tree = materialize(anchor, parents, deltas)
        if folded:
            fold_bn(tree)
        out = tree(x)
    assert len(out) == len(anchor.task_names)
    for name, o in zip(anchor.task_names, out):
        scale = max(1.0, ref[name].abs().max().item())
        assert (o - ref[name]).abs().max().item() <= 1e-4 * scale, name
    return tree


def test_random_trees_and_deltas_match_dynamic_forward(tiny_anchor):
    rng = np.random.default_rng(0)
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    x = torch.rand(2, 3, 32, 32)
    n_cross = 0
    for i in range(12):
        p = _random_tree(rng, L, N)
        n_cross += int(np.any(canonicalize(p)[1:] >= 0) and np.any((p[1:] != np.arange(N)) & used_nodes(p)[1:]))
        d = torch.from_numpy(rng.normal(0, 0.3, tiny_anchor.bn_delta_size).astype(np.float32))
        _check(tiny_anchor, p, d, x, folded=bool(i % 2))
    assert n_cross >= 6                     # cross-task edges were exercised


def test_only_used_nodes_with_stable_names(tiny_anchor):
    L, N = tiny_anchor.num_layers, tiny_anchor.num_tasks
    p = identity_table(L, N)
    p[3] = [0, 0, 0]
    p[6] = [0, 1, 1]
    tree = _check(tiny_anchor, p, None, torch.rand(1, 3, 32, 32))
    used = used_nodes(canonicalize(p))
    nodes = {n for n, _ in tree.named_children() if n.startswith("node")}
    assert nodes == {f"node{l}_{j}" for l in range(L) for j in range(N) if used[l, j]}
    heads = {n for n, _ in tree.named_children() if n.startswith("head_")}
    assert heads == {f"head_{t}" for t in tiny_anchor.task_names}
    names = dict(tree.named_parameters())
    s = next(s for s in tiny_anchor.bn_layout if used[s.layer, s.stream])
    assert f"{s.name}.conv.weight" in names
    assert not any(n.startswith("node1_1.") for n in names)   # dead node dropped


def test_materialize_does_not_modify_the_anchor(tiny_anchor):
    before = {k: v.clone() for k, v in tiny_anchor.state_dict().items()}
    d = torch.ones(tiny_anchor.bn_delta_size)
    fold_bn(materialize(tiny_anchor, identity_table(tiny_anchor.num_layers, 3), d))
    for k, v in tiny_anchor.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_deltas_size_is_refused(tiny_anchor):
    with pytest.raises(ValueError, match="bn_deltas"):
        materialize(tiny_anchor, identity_table(tiny_anchor.num_layers, 3), torch.zeros(3))


def _has_cross_task_edge(parents) -> bool:
    canon = canonicalize(parents)
    N = canon.shape[1]
    return bool(np.any((canon[1:] >= 0) & (canon[1:] != np.arange(N))))


def test_materialize_run_on_sampled_preferences(tiny_run):
    """~20 sampled (r, c), plus the simplex corners: materialize == AnchorNet.forward."""
    from dymu_rt.compile.architecture import materialize_run
    from dymu_rt.core.preference import sample_preferences
    from dymu_rt.run.layout import RunDir

    _, anchor, edge, weight = RunDir(tiny_run).load_all()
    prefs = [(p.r, p.c) for p in sample_preferences(3, 18, np.random.default_rng(7))]
    prefs += [((0.2, 0.3, 0.5), 0.1), ((1.0, 0.0, 0.0), 0.9)]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    n_cross, topologies, deltas_matter = 0, set(), False
    for r, c in prefs:
        rt, ct = torch.tensor(r, dtype=torch.float32), torch.tensor(c, dtype=torch.float32)
        arch, tree = materialize_run(tiny_run, r, c)
        parents = edge.architecture(rt, ct)
        assert arch.parents == tuple(map(tuple, canonicalize(parents).tolist()))
        n_cross += _has_cross_task_edge(parents)
        topologies.add(arch.id)
        with torch.no_grad():
            ref = anchor(x, parents, weight(rt, ct))
            plain = anchor(x, parents)
            out = tree(x)
        for name, o in zip(anchor.task_names, out):
            scale = max(1.0, float(ref[name].abs().max()))
            assert (o - ref[name]).abs().max() <= 1e-4 * scale, (r, c, name)
        deltas_matter |= any((ref[k] - plain[k]).abs().max() > 1e-4 for k in ref)
    assert n_cross >= 1, "no sampled tree had a cross-task edge"
    assert len(topologies) >= 2 and deltas_matter


def test_materialize_run_refuses_bad_preferences(tiny_run):
    from dymu_rt.compile.architecture import materialize_run, preference_tensors
    from dymu_rt.core.errors import ValidationError

    for r, c, match in (((2.0, 0.0, 0.0), 0.5, "sums to 2"), ((0.5, 0.5, 0.0), 5, "outside"),
                        ((0.5, 0.5), 0.5, "2 entries"), ((float("nan"), 0.5, 0.5), 0.5, "non-finite"),
                        ((-0.5, 1.0, 0.5), 0.5, "negative")):
        with pytest.raises(ValidationError, match=match):
            materialize_run(tiny_run, r, c)
    with pytest.raises(ValidationError, match="3 entries"):
        preference_tensors([0.2, 0.3, 0.5], 0.5, n_tasks=4)
