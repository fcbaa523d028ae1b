"""Uniformity μ_r = 1 − KL(L̂ ‖ 1/N) against a direct computation."""

import math

import numpy as np
import pytest

from dymu_rt.evaluate.uniformity import mean_uniformity, uniformity


def _direct(r, loss):
    w = [a * b for a, b in zip(r, loss)]
    s = sum(w)
    n = len(r)
    return 1 - sum((x / s) * math.log((x / s) * n) for x in w if x > 0)


def test_matches_direct_computation():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5):
        for _ in range(5):
            r = rng.dirichlet(np.ones(n))
            loss = rng.uniform(0.1, 3.0, n)
            assert uniformity(r, loss) == pytest.approx(_direct(r, loss), abs=1e-12)


def test_equal_weighted_losses_are_perfectly_uniform():
    assert uniformity([0.5, 0.25, 0.25], [1.0, 2.0, 2.0]) == pytest.approx(1.0)


def test_zero_entries_contribute_nothing():
    # r = (1, 0, 0): L̂ = (1, 0, 0), KL = log 3.
    assert uniformity([1.0, 0.0, 0.0], [2.0, 5.0, 7.0]) == pytest.approx(1 - math.log(3))
    assert uniformity([0.5, 0.5], [0.0, 1.0]) == pytest.approx(1 - math.log(2))
    with pytest.raises(ValueError, match="undefined"):
        uniformity([1.0, 0.0], [0.0, 3.0])


def test_mean_over_preferences():
    rs = [[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]
    ls = [[1.0, 0.5], [2.0, 1.0], [0.3, 0.3]]
    assert mean_uniformity(rs, ls) == pytest.approx(np.mean([_direct(r, l) for r, l in zip(rs, ls)]))
    with pytest.raises(ValueError):
        mean_uniformity(rs, ls[:2])
    with pytest.raises(ValueError, match="2 entries"):
        uniformity([0.5, 0.5], [1.0, 1.0, 1.0])
