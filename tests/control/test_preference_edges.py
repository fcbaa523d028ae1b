"""Preference parsing, sampling and grids at their edges: exact error lines, bounds, the
bad-row redraw of the Dirichlet sampler, the RNG stream. Written to kill the survivors of
the issue-28 mutmut run of control/preference.py. < 1 s."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dymu_rt.core import preference as P
from dymu_rt.core.errors import ValidationError


def test_numbers_of_every_kind_and_what_is_not_a_number():
    assert P.parse_c(np.float32(0.5)) == 0.5 and P.parse_c(np.array(0.25)) == 0.25
    assert P.parse_c(0) == 0.0 and P.parse_c(1) == 1.0 and P.parse_c("1/2") == 0.5 and P.parse_c(" 0.5 ") == 0.5
    for bad in (np.array([0.5]), True, "x", None):
        with pytest.raises(ValidationError, match=r"^c = .* is not a number; expected a value in \[0, 1\]"):
            P.parse_c(bad)
    with pytest.raises(ValidationError, match=r"^c = -0.1 is outside \[0, 1\]"):
        P.parse_c(-0.1)
    with pytest.raises(ValidationError, match=r"^c = nan is outside \[0, 1\]"):
        P.parse_c("nan")                                             # a number, just not in range
    assert P.parse_r(np.float64(1.0), 1) == (1.0,)                 # a 0-d value is one entry


def test_r_error_lines_show_the_value_as_given():
    with pytest.raises(ValidationError, match=r"^r = 0.5, 0.6 sums to 1.1; expected N=2 entries"):
        P.parse_r(" 0.5, 0.6 ", 2)
    with pytest.raises(ValidationError, match=r"^r = 0.5,0.6 sums to 1.1;"):
        P.parse_r([0.5, 0.6], 2)
    with pytest.raises(ValidationError, match=r"^r = 'a,b': 'a' is not a number; expected comma-separated numbers"):
        P.parse_r("a,b", 2)
    with pytest.raises(ValidationError, match=r"^r = 0,0 sums to 0; cannot normalize"):
        P.parse_r([0, 0], 2, normalize=True)
    with pytest.raises(ValidationError, match=r"^r = 1e\+308,1e\+308 sums to more than a float holds"):
        P.parse_r([1e308, 1e308], 2)
    assert P.parse_r([0.5, 0.5 + 5e-7], 2) == (0.5, 0.5 + 5e-7)     # within SUM_TOLERANCE


def test_make_preference_passes_normalize_on():
    assert P.make_preference([2, 1, 1], 0.5, 3, normalize=True).r == (0.5, 0.25, 0.25)
    with pytest.raises(ValidationError, match="sums to 4"):
        P.make_preference([2, 1, 1], 0.5, 3)


class _FakeRng:
    """Returns the given Dirichlet draws in order (to force the underflow redraw)."""

    def __init__(self, *draws):
        self.draws = [np.asarray(d, float) for d in draws]
        self.sizes = []

    def dirichlet(self, alpha, size):
        assert len(alpha) == 2 and alpha[0] == 0.2
        self.sizes.append(size)
        return self.draws.pop(0)


def test_dirichlet_redraws_nan_and_zero_rows_and_normalizes():
    rng = _FakeRng([[np.nan, np.nan], [2.0, 2.0], [0.0, 0.0]], [[0.3, 0.7], [1.0, 3.0]])
    out = P._dirichlet(rng, 2, 3, 0.2)
    np.testing.assert_allclose(out, [[0.3, 0.7], [0.5, 0.5], [0.25, 0.75]])
    assert rng.sizes == [3, 2]                                       # only the two bad rows again
    rng = _FakeRng([[0.1, np.inf]], [[np.nan, 1.0]], [[1.0, 1.0]])
    np.testing.assert_allclose(P._dirichlet(rng, 2, 1, 0.2), [[0.5, 0.5]])
    # a redraw that is itself bad (one row NaN, one all-zero) is drawn again, row by row
    rng = _FakeRng([[np.nan, 0.0], [0.0, 0.0], [1.0, 1.0]], [[np.nan, 1.0], [0.0, 0.0]], [[1.0, 3.0], [3.0, 1.0]])
    np.testing.assert_allclose(P._dirichlet(rng, 2, 3, 0.2), [[0.25, 0.75], [0.75, 0.25], [0.5, 0.5]])
    assert rng.sizes == [3, 2, 2]


def test_sampling_arguments_and_their_error_lines():
    rng = np.random.default_rng(0)
    assert P.sample_preferences(1, 2, rng)[0].r == (1.0,)            # one task is fine
    assert P.sample_preferences(3, 0, rng) == []                     # zero preferences too
    for args, msg in (((0, 1), r"^n_tasks = 0: expected a positive integer$"),
                      ((2.0, 1), r"^n_tasks = 2.0: expected a positive integer$"),
                      ((2, -1), r"^k = -1: expected a non-negative integer number of preferences$"),
                      ((2, 1.5), r"^k = 1.5: expected"),
                      ((2, 1, 0.0), r"^eta = 0.0: expected a Dirichlet concentration > 0$"),
                      ((2, 1, float("inf")), r"^eta = inf: expected"), ((2, 1, "1"), r"^eta = '1': expected")):
        with pytest.raises(ValidationError, match=msg):
            P.sample_preferences(*args[:2], rng, *args[2:])


def test_c_is_uniform_on_0_1_and_sample_r_draws_one_row_per_call():
    cs = [p.c for p in P.sample_preferences(2, 200, np.random.default_rng(1))]
    assert 0.0 <= min(cs) < 0.1 and 0.9 < max(cs) <= 1.0
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    one, two = P.sample_r(3, a), P.sample_r(3, a)
    both = P.sample_r(3, b, batch=2)
    assert one.shape == (3,) and both.shape == (2, 3) and one.dtype == np.float32
    np.testing.assert_array_equal(np.stack([one, two]), both)


def test_steps_and_their_error_lines():
    assert P.parse_step("1/3") == Fraction(1, 3) and P.parse_step(1) == 1
    for bad, msg in (("1.5", r"expected a value in \(0, 1\] that divides 1"), ("0", r"expected a value in \(0, 1\]"),
                     ("2/3", r"1 is not a whole number of steps \(1.5\)"),
                     ("0.3", r"1 is not a whole number of steps \(3.33333\)"),
                     (Fraction(3, 10**500), r"\(too many to count\)")):
        with pytest.raises(ValidationError, match=msg):
            P.parse_step(bad)
    with pytest.raises(ValidationError, match=r"^c_step = 0.3: 1 is not a whole number"):
        P.count_grid(3, "0.1", "0.3")
    with pytest.raises(ValidationError, match=r"^c_step = 0.3: 1 is not a whole number"):
        P.grid_c("0.3")
    for bad in (True, 0, 1.0):
        with pytest.raises(ValidationError, match=r"^n_tasks = .*: expected a positive integer$"):
            P.count_grid_r(bad, "0.1")


def test_count_text_is_exact_up_to_1e15_then_an_order_of_magnitude():
    assert P._count_text(10**15) == "1,000,000,000,000,000"
    assert P._count_text(10**15 + 1) == "about 10^15"
    assert P._count_text(2**100) == "about 10^30"


def test_grid_limits_are_inclusive_and_name_the_c_step(monkeypatch):
    assert P.check_grid_size(3, "0.1", limit=726) == 726
    with pytest.raises(ValidationError, match=r"makes 726 preference points; the limit is 725"):
        P.check_grid_size(3, "0.1", limit=725)
    with pytest.raises(ValidationError, match=r"grid step 0.5 \(c step 0.01\) for N=3 tasks makes 606"):
        P.check_grid_size(3, "0.5", "0.01", limit=100)
    with pytest.raises(ValidationError, match=r"\(c step 0.5\)"):
        P.check_grid_size(3, "0.5", limit=10)
    monkeypatch.setattr(P, "MAX_GRID_POINTS", 66)
    assert len(P.grid_r(3, "0.1")) == 66
    monkeypatch.setattr(P, "MAX_GRID_POINTS", 11)
    assert len(P.grid_c("0.1")) == 11
    monkeypatch.setattr(P, "MAX_GRID_POINTS", 10)
    with pytest.raises(ValidationError, match=r"^c_step = 0.1 makes 11 values of c; the limit is 10"):
        P.grid_c("0.1")
    with pytest.raises(ValidationError, match=r"^grid step 0.1 for N=3 tasks makes 66 task preferences r"):
        P.grid_r(3, "0.1")
    monkeypatch.undo()
    with pytest.raises(ValidationError, match=r"grid step 0.1 \(c step 1/2000\) for N=3 tasks makes 132,066"):
        P.grid(3, "0.1", "1/2000")                                   # the c step counts


def test_nearest_refuses_no_candidates_with_its_line():
    with pytest.raises(ValidationError, match=r"^nearest\(\): no candidate preferences to choose from$"):
        P.nearest(P.Preference((1.0,), 0.0), [])
