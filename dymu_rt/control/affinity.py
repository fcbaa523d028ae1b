"""Task affinity by representational similarity analysis (RSA) of the anchor net (paper §3.3).

The active loss pulls two tasks' parent distributions together in proportion to how
related the tasks are. Relatedness is read off the frozen anchor: two streams are alike at
layer l when they organise the same K images alike, i.e. when their K x K similarity
matrices agree (Kriegeskorte et al., 2008; used for branching by Vandenhende et al., 2019).

Per layer l and stream i: S_l(i) = cosine-similarity matrix of the K flattened features.
D_l(i, j) = ||S_l(i) − S_l(j)||_F; each row of D_l is divided by its maximum so the most
dissimilar other stream is at 1 (a row that is all zeros, i.e. all streams identical to
i, stays 0); A_l = 1 − D̂_l; A = mean over layers. The diagonal is 1. Because of the
per-row scaling A is not symmetric in general (row i says how close j is *relative to
i's most distant stream*); the regularizer uses A(i, j) as given.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dymu_rt.core.errors import ValidationError


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [K, K] of K samples' flattened features (float64).

    An all-zero feature vector (e.g. a dead ReLU map) has similarity 0 to everything,
    rather than NaN.
    """
    f = features.detach().reshape(features.shape[0], -1).to(torch.float64)
    norm = f.norm(dim=1, keepdim=True)
    f = f / torch.where(norm > 0, norm, torch.ones_like(norm))
    return f @ f.T


def rsa_affinity(features: Sequence[Sequence[torch.Tensor]]) -> np.ndarray:
    """Task affinity A (N, N) in [0, 1] from ``features[l][i]`` = Tensor[K, ...] (stream i, layer l)."""
    if len(features) == 0:
        raise ValueError("rsa_affinity needs features of at least one layer")
    n = len(features[0])
    per_layer = []
    for l, layer in enumerate(features):
        if len(layer) != n:
            raise ValueError(f"layer {l} has {len(layer)} streams, layer 0 has {n}")
        k = layer[0].shape[0]
        if any(f.shape[0] != k for f in layer):
            raise ValueError(f"layer {l}: every stream must see the same K samples")
        sims = torch.stack([similarity_matrix(f) for f in layer])             # [N, K, K]
        d = torch.cdist(sims.reshape(n, -1), sims.reshape(n, -1))              # Frobenius distances
        row_max = d.max(dim=1, keepdim=True).values
        d_hat = d / torch.where(row_max > 0, row_max, torch.ones_like(row_max))
        per_layer.append(1.0 - d_hat)
    a = torch.stack(per_layer).mean(0).cpu().numpy()
    np.fill_diagonal(a, 1.0)          # cdist's diagonal is ~1e-8, not exactly 0
    return np.clip(a, 0.0, 1.0)


@torch.no_grad()
def compute_affinity(anchor, images: torch.Tensor, k: int) -> np.ndarray:
    """RSA affinity of a (frozen) anchor net on the first ``k`` of ``images`` [B, 3, H, W].

    Calls ``anchor.stream_features(x)`` -> list over layers of list over streams of
    Tensor[k, C, H, W] (the identity tree's node outputs).
    """
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValidationError(f"affinity samples k = {k!r}: expected an integer >= 2 "
                              f"(a similarity matrix needs at least 2 images)")
    if images.shape[0] < k:
        raise ValidationError(f"affinity samples k = {k} but only {images.shape[0]} images were given")
    was_training = getattr(anchor, "training", False)
    if hasattr(anchor, "eval"):
        anchor.eval()
    try:
        feats = anchor.stream_features(images[:k])
    finally:
        if was_training:
            anchor.train()
    return rsa_affinity(feats)
