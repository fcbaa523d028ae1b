"""RSA task affinity: identical streams, unrelated streams, a fake anchor."""

import numpy as np
import pytest
import torch

from dymu_rt.control.affinity import compute_affinity, rsa_affinity, similarity_matrix
from dymu_rt.core.errors import ValidationError

torch.set_num_threads(1)
K = 6


def _feats(seed, shape=(K, 4, 3, 3)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_similarity_matrix_is_cosine():
    f = _feats(0)
    s = similarity_matrix(f)
    flat = f.reshape(K, -1).double()
    expect = torch.nn.functional.cosine_similarity(flat[:, None], flat[None], dim=-1)
    assert torch.allclose(s, expect, atol=1e-12)
    z = torch.zeros(2, 5)                                   # a dead feature map: 0, not NaN
    assert torch.equal(similarity_matrix(z), torch.zeros(2, 2, dtype=torch.float64))


def test_identical_streams_have_affinity_one_and_unrelated_lower():
    base = _feats(0)
    scaled = base * 3.0                                      # cosine similarity ignores scale
    other = _feats(99)
    feats = [[base, scaled, other], [base.relu(), scaled.relu(), other.relu()]]
    a = rsa_affinity(feats)
    assert a.shape == (3, 3) and np.allclose(np.diag(a), 1)
    assert a[0, 1] == pytest.approx(1.0) and a[1, 0] == pytest.approx(1.0)
    # Stream 2 is each other stream's most distant one: scaled to distance 1, affinity 0.
    assert a[0, 2] == pytest.approx(0.0) and a[1, 2] == pytest.approx(0.0)
    assert (a >= 0).all() and (a <= 1).all()


def test_per_layer_row_scaling_and_mean_over_layers():
    # Per layer: D̂ = D / row max; A = mean over layers of 1 − D̂ (computed here directly).
    feats = [[_feats(s + 10 * l) for s in range(3)] for l in range(2)]
    layers = []
    for layer in feats:
        S = [similarity_matrix(f) for f in layer]
        D = np.array([[torch.linalg.norm(S[i] - S[j]).item() for j in range(3)] for i in range(3)])
        layers.append(1 - D / D.max(axis=1, keepdims=True))
    np.testing.assert_allclose(rsa_affinity(feats), np.mean(layers, axis=0), atol=1e-9)


def test_graded_relatedness():
    base = _feats(0, (K, 16))
    noise = _feats(1, (K, 16))
    near, far = base + 0.1 * noise, base + 1.0 * noise
    a = rsa_affinity([[base, near, far]])
    assert a[0, 1] > a[0, 2]


class _FakeAnchor:
    """Stands in for AnchorNet.stream_features: per layer, per stream, Tensor[k, C, H, W]."""

    def __init__(self):
        self.seen = None
        self.training = False

    def stream_features(self, x):
        self.seen = x.shape[0]
        f = x.mean(1, keepdim=True)
        return [[f, f * 2, torch.flip(f, dims=[0])], [f.relu(), f.relu(), (-f).relu()]]

    def eval(self):
        return self


def test_compute_affinity_uses_k_images():
    anchor = _FakeAnchor()
    images = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a = compute_affinity(anchor, images, 5)
    assert anchor.seen == 5 and a.shape == (3, 3)
    assert a[0, 1] == pytest.approx(1.0) and a[0, 2] < 1.0
    for bad in (1, 11):
        with pytest.raises(ValidationError, match="k = "):
            compute_affinity(anchor, images, bad)
