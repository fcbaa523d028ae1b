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


# -- issue 28, second round: mutmut on this module (each test < 0.1 s; the manifest one ~0.3 s) --

def _l1_plus_dc(p, q):
    """The distance of DESIGN.md §2 written out here: L1 on r plus |Δc|."""
    return sum(abs(a - b) for a, b in zip(p.r, q.r)) + abs(p.c - q.c)


def test_select_falls_back_to_the_point_a_brute_force_search_finds():
    import random

    rng = random.Random(7)
    pts = []
    for _ in range(25):
        a = rng.random()
        pts.append(Preference((round(a, 2), round(1 - a, 2)), rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])))
    topos = [f"t{i}" for i in range(len(pts))]
    sel = Selector(set(topos), pts, topos)
    for _ in range(200):
        a = rng.random()
        q = Preference((a, 1 - a), rng.random())
        d = [_l1_plus_dc(q, p) for p in pts]
        want = d.index(min(d))                     # ties: the first, as list.index does
        s = sel.select(q, "not-in-bundle")
        assert (s.topology, s.weights_at, s.grid_point, s.binding) == (topos[want], pts[want], pts[want],
                                                                        NEAREST_GRID)
        assert s.key == (topos[want], pts[want].r, pts[want].c)
        assert sel.select(q, topos[want]).weights_at == q            # in the bundle: exact, own weights


def test_points_may_be_given_as_r_c_pairs_and_are_made_floats():
    sel = Selector(["a", "b"], [((1, 0), 0), ([0.5, 0.5], 1)], ("a", "b"))
    assert sel.points == [Preference((1.0, 0.0), 0.0), Preference((0.5, 0.5), 1.0)]
    assert all(type(v) is float for p in sel.points for v in (*p.r, p.c))
    assert sel.topologies == frozenset({"a", "b"}) and sel.point_topologies == ["a", "b"]
    s = sel.select(Preference((0.6, 0.4), 0.9), "zzz")
    assert (s.topology, s.grid_point) == ("b", Preference((0.5, 0.5), 1.0))
    assert sel.select(Preference((0.6, 0.4), 0.9), "a").binding == EXACT      # a list of ids works as a set


def test_one_topology_per_point_or_a_clear_error():
    with pytest.raises(ValueError, match="^one topology per grid point expected$"):
        Selector({"a"}, [Preference((1.0,), 0.0)], [])


def test_empty_grid_is_refused_with_the_reason():
    empty = Selector({"t"}, [], [])
    for call in (lambda: empty.nearest_point(Preference((1.0,), 0.0)), lambda: empty.nearest_r((1.0,))):
        with pytest.raises(ValidationError, match="^the bundle has no grid points to fall back to$"):
            call()


def test_nearest_r_ties_go_to_the_smallest_sorted_r_and_snapping_has_a_1e_9_slack():
    sel = Selector({"a", "b"}, [Preference((1.0, 0.0), 0.5), Preference((0.0, 1.0), 0.0)], ["a", "b"])
    assert sel.nearest_r((0.5, 0.5)) == ((0.0, 1.0), True)          # equidistant: (0,1) < (1,0)
    assert sel.nearest_r([0.9, 0.1]) == ((1.0, 0.0), True)
    assert sel.nearest_r((1.0, 1e-9)) == ((1.0, 0.0), False)         # exactly 1e-9 off: on the grid
    assert sel.nearest_r((1.0, 1e-8)) == ((1.0, 0.0), True)
    assert sel.points_at([1.0, 0.0]) == [(Preference((1.0, 0.0), 0.5), "a")]
    assert sel.points_at((0.5, 0.5)) == []


def test_from_manifest_keeps_every_point_its_r_c_and_topology():
    from dymu_rt.bundle.manifest import read_manifest
    from dymu_rt.runtime import default_bundle_path

    m = read_manifest(default_bundle_path())
    sel = Selector.from_manifest(m)
    assert sel.topologies == frozenset(m.topologies) and len(m.topologies) > 1
    assert [(p.r, p.c) for p in sel.points] == [(tuple(p.r), float(p.c)) for p in m.points]
    assert sel.point_topologies == [p.topology for p in m.points]
    q = m.points[len(m.points) // 2]
    s = sel.select(Preference(tuple(q.r), float(q.c)), "not-a-topology")
    assert s.topology == q.topology and s.grid_point == Preference(tuple(q.r), float(q.c))
