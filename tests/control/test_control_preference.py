"""Preferences: validation messages, normalization, sampling, exact grids, nearest point."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch

from dymu_rt.core.preference import (Preference, grid, grid_c, grid_r, make_preference, nearest,
                                        parse_c, parse_r, parse_step, preference_distance,
                                        sample_preferences, sample_r)
from dymu_rt.core.errors import ValidationError

torch.set_num_threads(1)


def test_parse_r_accepts_strings_with_spaces_and_sequences():
    assert parse_r("0.6, 0.2 ,0.2", 3) == (0.6, 0.2, 0.2)
    assert parse_r([0.5, 0.5], 2) == (0.5, 0.5)
    assert parse_r(np.array([0.25, 0.75]), 2) == (0.25, 0.75)
    assert parse_r(torch.tensor([0.5, 0.5]), 2) == (0.5, 0.5)
    assert parse_r("1/3,1/3,1/3", 3) == pytest.approx((1 / 3,) * 3)


def test_parse_r_sum_error_names_value_sum_and_n():
    with pytest.raises(ValidationError) as e:
        parse_r("0.6,0.2,0.1", 3)
    msg = str(e.value)
    assert "0.6,0.2,0.1" in msg and "sums to 0.9" in msg and "N=3" in msg and "--normalize" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("bad, fragment", [
    ("0.5,0.5", "2 entries"),
    ("0.5,-0.1,0.6", "negative"),
    ("nan,0.5,0.5", "non-finite"),
    ("a,0.5,0.5", "'a' is not a number"),
    ("", "is not a number"),
    ([0.5, "x", 0.5], "'x' is not a number"),
    ([True, 0.0, 0.0], "True is not a number"),
    (0.5, "expected comma-separated numbers"),
])
def test_parse_r_refuses_bad_values(bad, fragment):
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(")):
        parse_r(bad, 3)


def test_parse_r_normalize_rescales_but_still_refuses_nonsense():
    assert parse_r("2,1,1", 3, normalize=True) == (0.5, 0.25, 0.25)
    for bad in ("0,0,0", "1,-1,1", "nan,1,1"):
        with pytest.raises(ValidationError):
            parse_r(bad, 3, normalize=True)


def test_parse_c_range_and_types():
    assert parse_c("0.25") == 0.25 and parse_c(1) == 1.0 and parse_c(torch.tensor(0.5)) == 0.5
    for bad, fragment in (("1.5", "outside"), ("-0.01", "outside"), ("x", "not a number"),
                          (float("nan"), "outside"), (True, "not a number"), ([0.5], "not a number")):
        with pytest.raises(ValidationError, match=fragment):
            parse_c(bad)


def test_make_preference():
    p = make_preference("0.2,0.8", "0.3", 2)
    assert p == Preference((0.2, 0.8), 0.3) and p.n_tasks == 2
    with pytest.raises(ValidationError, match="N=2"):
        make_preference("1", 0.3, 2)


def test_sampling_is_on_the_simplex_and_reproducible():
    a = sample_preferences(3, 50, np.random.default_rng(0))
    b = sample_preferences(3, 50, np.random.default_rng(0))
    assert a == b and len(a) == 50
    for p in a:
        assert len(p.r) == 3 and min(p.r) >= 0 and abs(sum(p.r) - 1) < 1e-9 and 0 <= p.c <= 1
        parse_r(p.r, 3)                      # every sample passes validation
    # eta = 0.2 is sparse: most of the mass usually sits on one task.
    assert np.mean([max(p.r) for p in a]) > 0.7
    r = sample_r(4, np.random.default_rng(1), batch=5)
    assert r.shape == (5, 4) and r.dtype == np.float32
    assert np.allclose(r.sum(1), np.ones(5))
    assert sample_r(4, np.random.default_rng(1)).shape == (4,)
    with pytest.raises(ValidationError):
        sample_preferences(3, 2, np.random.default_rng(0), eta=0)


def test_tiny_eta_never_yields_nan():
    for p in sample_preferences(3, 200, np.random.default_rng(0), eta=1e-3):
        assert np.isfinite(p.r).all() and abs(sum(p.r) - 1) < 1e-9


@pytest.mark.parametrize("step", ["0.1", 0.1, "1/10", Fraction(1, 10)])
def test_grid_counts_are_exact(step):
    rs = grid_r(3, step)
    assert len(rs) == 66 and len(set(rs)) == 66
    assert all(sum(r) == 1 and all(v >= 0 and (v / Fraction(1, 10)).denominator == 1 for v in r) for r in rs)
    assert len(grid(3, step)) == 726


def test_grid_shapes_and_c_values():
    for n, m in ((2, 4), (4, 5), (5, 2)):
        assert len(grid_r(n, Fraction(1, m))) == comb(m + n - 1, n - 1)
    pts = grid(3, "0.5", "0.25")
    assert len(pts) == 6 * 5
    assert sorted({p.c for p in pts}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(isinstance(v, float) for p in pts for v in p.r)
    assert grid_r(2, "1/3")[1] == (Fraction(2, 3), Fraction(1, 3))
    assert grid_c("1") == [0, 1]


@pytest.mark.parametrize("bad", ["0.3", 0.3, 0, "-0.1", "1.5", "abc", float("nan"), True])
def test_grid_refuses_steps_that_do_not_divide_one(bad):
    with pytest.raises(ValidationError, match="step"):
        parse_step(bad)
    with pytest.raises(ValidationError):
        grid(3, "0.5", bad)


def test_nearest_uses_l1_on_r_plus_abs_dc():
    cands = grid(3, "0.5")
    q = Preference((0.6, 0.3, 0.1), 0.4)
    i = nearest(q, cands)
    d = [preference_distance(q, c) for c in cands]
    assert d[i] == min(d)
    assert cands[i] == Preference((0.5, 0.5, 0.0), 0.5)
    assert preference_distance(q, cands[i]) == pytest.approx(0.1 + 0.2 + 0.1 + 0.1)
    # Ties resolve to the first candidate; (r, c) pairs are accepted.
    assert nearest(Preference((0.5, 0.5), 0.5), [((1.0, 0.0), 0.5), ((0.0, 1.0), 0.5)]) == 0
    with pytest.raises(ValidationError, match="N=3"):
        nearest(q, [((1.0, 0.0), 0.0)])
