"""Exact hypervolume against inclusion–exclusion and integer-grid counting (2, 3, 5 dims)."""

import itertools

import numpy as np
import pytest

from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.hypervolume import hypervolume


def _inclusion_exclusion(points, ref):
    """Σ over non-empty subsets S of (-1)^(|S|+1) · volume of the box [max_{p∈S} p, ref)."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


def _grid_count(points, ref):
    """Integer points: count unit cells [x, x+1) with some point <= x in every coordinate."""
    m = len(ref)
    count = 0
    for cell in itertools.product(*[range(int(v)) for v in ref]):
        if any(np.all(p <= np.asarray(cell)) for p in points):
            count += 1
    return count


@pytest.mark.parametrize("m, k", [(2, 7), (3, 6), (5, 5)])
def test_matches_inclusion_exclusion(m, k):
    rng = np.random.default_rng(m)
    for _ in range(4):
        pts = rng.uniform(0, 1, size=(k, m))
        ref = np.full(m, 1.1)
        assert hypervolume(pts, ref) == pytest.approx(_inclusion_exclusion(pts, ref), rel=1e-10)


@pytest.mark.parametrize("m, k, side", [(2, 8, 8), (3, 6, 6), (5, 5, 4)])
def test_matches_integer_grid_counting(m, k, side):
    rng = np.random.default_rng(10 + m)
    pts = rng.integers(0, side, size=(k, m)).astype(float)
    ref = np.full(m, float(side))
    assert hypervolume(pts, ref) == _grid_count(pts, ref)


def test_simple_cases_and_points_outside_the_reference():
    assert hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0, 3.0]) == pytest.approx(3.0)
    assert hypervolume([[0.0, 0.0, 0.0]], [1.0, 2.0, 3.0]) == pytest.approx(6.0)
    # A point on or beyond the reference in any coordinate adds nothing.
    assert hypervolume([[1.0, 2.0], [2.0, 1.0], [0.0, 3.0], [-5.0, 4.0]], [3.0, 3.0]) == pytest.approx(3.0)
    assert hypervolume(np.zeros((0, 3)), [1, 1, 1]) == 0.0
    # Duplicates and dominated points change nothing.
    assert hypervolume([[1, 1, 1], [1, 1, 1], [1.5, 1.5, 1.5]], [2, 2, 2]) == pytest.approx(1.0)
    assert hypervolume([[0.5]], [2.0]) == pytest.approx(1.5)


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(ValidationError, match="reference point has 2 values"):
        hypervolume(np.ones((4, 3)), [1.0, 2.0])
    with pytest.raises(ValidationError, match="NaN"):
        hypervolume([[np.nan, 1.0]], [2.0, 2.0])
