"""Property-based tests (hypothesis) of preference parsing and grid counting.

Whatever a user types, parsing either returns a valid preference or raises a one-line
ValidationError; and the closed-form grid count equals the enumerated grid's length.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dymu_rt.core.preference import (MAX_GRID_POINTS, SUM_TOLERANCE, check_grid_size, count_grid,
                                        count_grid_r, grid, grid_r, parse_c, parse_r, parse_step)
from dymu_rt.core.errors import ValidationError

numbers_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**500, max_value=10**500).map(str),
    st.tuples(st.integers(-10**400, 10**400), st.integers(-5, 10**400)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.text(max_size=12),
)
r_text = st.lists(numbers_text, min_size=0, max_size=5).map(",".join)
FAST = settings(max_examples=300, deadline=None)


def _one_line(e: Exception) -> bool:
    return bool(str(e)) and "\n" not in str(e)


@FAST
@given(text=r_text, n=st.integers(1, 5), normalize=st.booleans())
def test_parse_r_returns_a_simplex_point_or_one_line_error(text, n, normalize):
    try:
        r = parse_r(text, n, normalize=normalize)
    except ValidationError as e:
        assert _one_line(e)
        return
    assert len(r) == n and all(math.isfinite(v) and v >= 0 for v in r)
    assert abs(math.fsum(r) - 1) <= SUM_TOLERANCE * 10


@FAST
@given(values=st.lists(st.floats(min_value=0, max_value=1.7e308), min_size=1, max_size=6))
def test_normalize_never_overflows(values):
    try:
        r = parse_r(values, len(values), normalize=True)
    except ValidationError as e:        # all zero
        assert max(values) == 0 and _one_line(e)
        return
    assert abs(math.fsum(r) - 1) < 1e-9 and all(0 <= v <= 1 for v in r)


@FAST
@given(text=numbers_text)
def test_parse_c_returns_unit_interval_or_one_line_error(text):
    try:
        c = parse_c(text)
    except ValidationError as e:
        assert _one_line(e)
        return
    assert 0.0 <= c <= 1.0


@FAST
@given(text=numbers_text)
def test_parse_step_divides_one_or_refuses(text):
    try:
        s = parse_step(text)
    except ValidationError as e:
        assert _one_line(e)
        return
    assert 0 < s <= 1 and (1 / s).denominator == 1


@settings(max_examples=120, deadline=None)
@given(n=st.integers(1, 4), m=st.integers(1, 9), mc=st.integers(1, 9))
def test_count_grid_matches_the_enumeration(n, m, mc):
    step, c_step = Fraction(1, m), Fraction(1, mc)
    assert count_grid_r(n, step) == len(grid_r(n, step)) == len(set(grid_r(n, step)))
    assert count_grid(n, step, c_step) == len(grid(n, step, c_step))


@FAST
@given(n=st.integers(1, 30), exp=st.integers(0, 400))
def test_count_is_cheap_and_the_limit_is_enforced(n, exp):
    step = Fraction(1, 10**exp)
    k = count_grid(n, step)                     # closed form: no enumeration, no memory
    if k > MAX_GRID_POINTS:
        with pytest.raises(ValidationError, match="limit"):
            check_grid_size(n, step)
        with pytest.raises(ValidationError, match="limit"):
            grid(n, step)
    else:
        assert check_grid_size(n, step) == k
