"""Edge and weight hypernets: shapes, identity start, zero deltas, ONNX export vs torch."""

import numpy as np
import onnx
import pytest
import torch

from dymu_rt.control.hypernets import (EdgeHypernet, PreferenceEmbedding, WeightHypernet, count_params,
                                       export_onnx)
from dymu_rt.core.preference import sample_preferences
from dymu_rt.core.tree import identity_table

torch.set_num_threads(1)
N, L, D = 3, 5, 24


def _prefs(k=8, seed=0):
    ps = sample_preferences(N, k, np.random.default_rng(seed))
    return (torch.tensor([p.r for p in ps], dtype=torch.float32),
            torch.tensor([p.c for p in ps], dtype=torch.float32))


def test_embedding_is_linear_in_r_and_c():
    torch.manual_seed(0)
    emb = PreferenceEmbedding(N, dim=4)
    r = torch.tensor([[0.5, 0.25, 0.25]])
    c = torch.tensor([0.4])
    expect = 0.5 * emb.task_embeddings[0] + 0.25 * emb.task_embeddings[1] + 0.25 * emb.task_embeddings[2] \
        + 0.4 * emb.resource_embedding
    assert torch.allclose(emb(r, c)[0], expect)


def test_edge_hypernet_shapes_and_batching():
    torch.manual_seed(0)
    h = EdgeHypernet(N, L)
    r, c = _prefs()
    out = h(r, c)
    assert out.shape == (8, L - 1, N, N)
    assert torch.allclose(h(r[2], c[2]), out[2], atol=1e-6)          # unbatched = batch row
    assert torch.allclose(h(r, c[:, None]), out, atol=1e-6)          # c as [B, 1]
    assert h(r[0], 0.3).shape == (L - 1, N, N)                        # c as a float
    with pytest.raises(ValueError, match="r must have shape"):
        h(torch.ones(4) / 4, 0.5)
    with pytest.raises(ValueError, match="c must have shape"):
        h(r, torch.zeros(3))
    # Architecture: 2 MLP layers of 100, L-1 heads of N x N, the identity prior.
    expected = (N * 32 + 32) + (32 * 100 + 100) + (100 * 100 + 100) + (L - 1) * (100 * N * N + N * N) \
        + (L - 1) * N * N
    assert count_params(h) == expected and count_params(None) == 0


def test_edge_hypernet_starts_from_the_anchor_tree():
    for seed in range(5):
        torch.manual_seed(seed)
        h = EdgeHypernet(N, L)
        r, c = _prefs(20, seed)
        for i in range(20):
            assert np.array_equal(h.architecture(r[i], c[i]), identity_table(L, N))
        assert np.array_equal(h.architecture(torch.eye(N)[0], 1.0), identity_table(L, N))


def test_architecture_is_the_canonical_argmax_tree():
    torch.manual_seed(0)
    h = EdgeHypernet(2, 3)
    with torch.no_grad():
        for head in h.heads:
            head.weight.zero_()
            head.bias.zero_()
        h.identity_prior.zero_()
        # Row 1: both nodes read stream 0. Row 2: both nodes read stream 1.
        h.identity_prior[0] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        h.identity_prior[1] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    p = h.architecture([0.5, 0.5], 0.0)
    assert p.dtype == np.int64 and p.shape == (3, 2)
    # Node (1, 0) is dead (nobody at layer 2 reads it); so is stem node (0, 1).
    assert p.tolist() == [[0, -1], [-1, 0], [1, 1]]


def test_weight_hypernet_starts_at_zero_deltas_and_learns():
    torch.manual_seed(0)
    w = WeightHypernet(N, D)
    r, c = _prefs()
    assert w(r, c).shape == (8, D) and w(r[0], c[0]).shape == (D,)
    assert torch.count_nonzero(w(r, c)) == 0                          # anchor weights at start
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    for _ in range(2):                                                 # zero output layer still trains
        loss = (w(r, c) - 1.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.count_nonzero(w(r, c)) > 0
    assert count_params(w) == (N * 32 + 32) + (32 * 100 + 100) + 2 * (100 * 100 + 100) + (100 * D + D)


@pytest.mark.parametrize("kind", ["edge", "weight"])
def test_onnx_export_matches_torch_in_onnxruntime(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    torch.manual_seed(1)
    net = EdgeHypernet(N, L) if kind == "edge" else WeightHypernet(N, D)
    if kind == "weight":
        torch.nn.init.normal_(net.out.weight, std=0.1)                # non-trivial deltas
    path = export_onnx(net, tmp_path / f"{kind}.onnx")
    model = onnx.load(str(path))
    assert model.ir_version <= 10
    assert [i.name for i in model.graph.input] == ["r", "c"]
    out_name = "logits" if kind == "edge" else "deltas"
    assert [o.name for o in model.graph.output] == [out_name]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    r, c = _prefs(4, seed=3)
    for i in range(4):
        got = sess.run(None, {"r": r[i:i + 1].numpy(), "c": c[i:i + 1, None].numpy()})[0]
        with torch.no_grad():
            ref = net(r[i], c[i]).numpy()
        assert got.shape == ((L - 1, N, N) if kind == "edge" else (D,))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))                           # atomic: no leftovers


def test_export_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="EdgeHypernet or WeightHypernet"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_identity_prior_size_and_learnability_are_settings():
    torch.manual_seed(0)
    default = EdgeHypernet(N, L)
    assert default.identity_prior.requires_grad
    assert torch.equal(default.identity_prior[0], 4.0 * torch.eye(N))
    fixed = EdgeHypernet(N, L, identity_prior=8.0, learnable_prior=False)
    assert not fixed.identity_prior.requires_grad
    assert torch.equal(fixed.identity_prior[-1], 8.0 * torch.eye(N))
    off = EdgeHypernet(N, L, identity_prior=0.0)              # the paper's plain heads: nothing to learn
    assert not off.identity_prior.requires_grad and not off.identity_prior.any()
    # Same keys whatever the setting: a stored edge hypernet loads into the default module.
    assert set(fixed.state_dict()) == set(default.state_dict())
    # A fixed prior does not move under training; the heads do.
    opt = torch.optim.Adam(fixed.parameters(), lr=0.1)
    before = fixed.identity_prior.detach().clone(), fixed.heads[0].bias.detach().clone()
    r, c = _prefs()
    fixed(r, c).square().sum().backward()
    opt.step()
    assert torch.equal(fixed.identity_prior, before[0]) and not torch.equal(fixed.heads[0].bias, before[1])
    with pytest.raises(ValueError, match="identity_prior must be >= 0"):
        EdgeHypernet(N, L, identity_prior=-1.0)


def test_identity_prior_falls_with_c_by_its_slope(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graph")
    torch.manual_seed(2)
    flat = EdgeHypernet(N, L, identity_prior=8.0, learnable_prior=False)
    sloped = EdgeHypernet(N, L, identity_prior=8.0, learnable_prior=False, prior_c_slope=1.0)
    sloped.load_state_dict(flat.state_dict())                         # same weights, same keys
    r = torch.tensor([0.2, 0.5, 0.3])
    for c, scale in ((0.0, 1.0), (0.25, 0.75), (1.0, 0.0)):
        heads = flat(r, torch.tensor(c)) - flat.identity_prior         # the heads' own logits at this c
        torch.testing.assert_close(sloped(r, torch.tensor(c)), heads + scale * flat.identity_prior)
    # batched: each row scaled by its own c
    rb, cb = _prefs(4, seed=5)
    ref = torch.stack([sloped(rb[i], cb[i]) for i in range(4)])
    torch.testing.assert_close(sloped(rb, cb), ref)
    # the exported graph computes the same (the runtime runs it)
    sess = ort.InferenceSession(str(export_onnx(sloped, tmp_path / "e.onnx")), providers=["CPUExecutionProvider"])
    for i in range(4):
        got = sess.run(None, {"r": rb[i:i + 1].numpy(), "c": cb[i:i + 1, None].numpy()})[0]
        np.testing.assert_allclose(got, ref[i].detach().numpy(), rtol=1e-5, atol=1e-5)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="prior_c_slope must be in"):
            EdgeHypernet(N, L, prior_c_slope=bad)
