"""Hypervolume corner cases found by the mutmut run of issue 28 (each test kills mutants
that the value tests let through): the non-dominated filter on its own, one point given as
a 1-D vector, a reference given as a row, and the error lines. < 1 s."""

from __future__ import annotations

import numpy as np
import pytest

from dymu_rt.core.errors import ValidationError
from dymu_rt.evaluate.hypervolume import _nondominated, hypervolume


def test_nondominated_keeps_exactly_the_pareto_front():
    pts = np.array([[1, 5, 2], [2, 2, 2], [3, 1, 1], [2, 3, 3],      # [2,3,3] is dominated by [2,2,2]
                    [1, 5, 2], [4, 4, 4], [1, 6, 2], [0, 9, 9]], float)
    got = {tuple(p) for p in _nondominated(pts)}
    assert got == {(1, 5, 2), (2, 2, 2), (3, 1, 1), (0, 9, 9)}
    # A point equal in all but one objective, where it is worse, is dominated.
    assert {tuple(p) for p in _nondominated(np.array([[1, 1, 1], [1, 1, 2]], float))} == {(1, 1, 1)}
    # Incomparable points all stay (none is dropped for being "dominated" in one objective only).
    inc = np.array([[1, 3, 2], [3, 1, 2], [2, 2, 1]], float)
    assert len(_nondominated(inc)) == 3


def test_one_point_as_a_vector_and_no_points():
    assert hypervolume([1.0, 2.0], [3.0, 3.0]) == pytest.approx(2.0)
    assert hypervolume([1, 2], [3, 3]) == pytest.approx(2.0)
    assert hypervolume(np.zeros((0,)), [3.0, 3.0]) == 0.0
    assert hypervolume([], [1.0, 1.0, 1.0]) == 0.0


def test_reference_given_as_a_row_is_flattened():
    pts = [[1.0, 2.0], [2.0, 1.0]]
    assert hypervolume(pts, [[3.0, 3.0]]) == pytest.approx(hypervolume(pts, [3.0, 3.0])) == pytest.approx(3.0)


def test_integer_inputs_give_the_float_result():
    assert hypervolume([[1, 2, 1]], [2, 3, 3]) == pytest.approx(1 * 1 * 2)
    assert isinstance(hypervolume([[1, 2]], [2, 3]), float)


def test_error_lines_name_the_problem():
    with pytest.raises(ValidationError, match=r"reference point \[1.0, inf\] must be finite"):
        hypervolume([[0.0, 0.0]], [1.0, np.inf])
    with pytest.raises(ValidationError, match="^hypervolume: points contain NaN$"):
        hypervolume([[np.nan, 0.0]], [1.0, 1.0])
    with pytest.raises(ValidationError, match=r"points have shape \[1, 3\] but the reference point has 2 values"):
        hypervolume([[0.0, 0.0, 0.0]], [1.0, 1.0])


@pytest.mark.parametrize("ref", [[3.0, 3.0], [3.0, 3.0, 3.0]])
def test_points_beyond_the_reference_add_nothing(ref):
    m = len(ref)
    inside = [1.0] * m
    alone = hypervolume([inside], ref)
    assert alone == pytest.approx(2.0 ** m)
    # beyond the reference in one objective (even if far better in the others), or on it
    for far in ([5.0] + [0.0] * (m - 1), [0.0] * (m - 1) + [4.0], [3.0] + [0.5] * (m - 1)):
        assert hypervolume([inside, far], ref) == pytest.approx(alone)
        assert hypervolume([far], ref) == 0.0
