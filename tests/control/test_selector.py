"""The one home of "preference -> topology and weights" (dymu_rt.core.selector). <0.1 s."""

import pytest

from dymu_rt.core.preference import Preference
from dymu_rt.core.selector import EXACT, NEAREST_GRID, Selector, static_refusal
from dymu_rt.core.errors import ValidationError

PTS = [Preference((1.0, 0.0), 0.0), Preference((0.5, 0.5), 0.0), Preference((0.5, 0.5), 1.0)]
SEL = Selector({"t0", "t1"}, PTS, ["t0", "t1", "t1"])


def test_exact_topology_binds_the_preference_itself():
    p = Preference((0.6, 0.4), 0.3)
    s = SEL.select(p, "t1")
    assert (s.topology, s.binding, s.weights_at, s.grid_point) == ("t1", EXACT, p, None)
    assert s.key == ("t1", (0.6, 0.4), 0.3)


def test_unknown_topology_falls_back_to_the_nearest_grid_point_and_its_weights():
    p = Preference((0.6, 0.4), 0.9)
    s = SEL.select(p, "not-in-bundle")
    assert s.binding == NEAREST_GRID and s.grid_point == PTS[2] and s.weights_at == PTS[2]
    assert s.topology == "t1"


def test_nearest_r_and_points_at():
    assert SEL.nearest_r((0.6, 0.4)) == ((0.5, 0.5), True)
    assert SEL.nearest_r((1.0, 0.0)) == ((1.0, 0.0), False)
    assert [p.c for p, _ in SEL.points_at((0.5, 0.5))] == [0.0, 1.0]


def test_static_refusal_and_empty_grid():
    e = static_refusal("B", "adashare", "so c = 1 cannot be honoured; omit c")
    assert isinstance(e, ValidationError)
    assert str(e) == ("bundle B holds one static architecture (adashare): it has no resource control, "
                      "so c = 1 cannot be honoured; omit c")
    with pytest.raises(ValidationError):
        Selector({"t"}, [], []).nearest_point(Preference((1.0,), 0.0))
