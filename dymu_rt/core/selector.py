"""The one home of "preference -> topology and weights": which topology runs (r, c), and whose
BN deltas it binds. Standard library, numpy-free even; torch-free.

Used by the Runtime (:meth:`dymu_rt.runtime.Runtime.set_preference`), the latency budget
(:func:`dymu_rt.runtime.latency.choose_for_budget`: :meth:`Selector.nearest_r`) and the
Triton router (:mod:`dymu_rt.core.routing`, which vendors this file), so the three
can never disagree.

The rule (DESIGN.md §2): the edge hypernet gives the exact tree for (r, c). If the bundle
has that topology, it runs with the weight hypernet's BN deltas at (r, c) itself
(``binding = "exact"``). Otherwise the nearest grid point (:func:`~dymu_rt.core.preference.nearest`:
L1 on r plus |Δc|, ties to the first) gives the topology *and* the weights: the deltas at
that grid point, the ones the controller was trained to pair with that tree
(``"nearest-grid"``). A static bundle (AdaShare / DAG / fixed baselines) has one topology
and no controller: :func:`static_refusal` words the one refusal of what it cannot honour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from .preference import Preference, nearest
from .errors import ValidationError

EXACT = "exact"
NEAREST_GRID = "nearest-grid"
STATIC = "static"


@dataclass(frozen=True)
class Selection:
    """Which topology runs a preference, and whose BN deltas it binds."""

    topology: str
    binding: str                            # "exact" | "nearest-grid"
    weights_at: Preference                  # the preference whose deltas are bound
    grid_point: Optional[Preference]        # the grid point used, for "nearest-grid"

    @property
    def key(self) -> tuple:
        """What the bound weights are a function of: (topology, r, c of the weights)."""
        return (self.topology, tuple(self.weights_at.r), float(self.weights_at.c))


class Selector:
    """A bundle's (or a router's) topologies and grid points, and the selection rule."""

    def __init__(self, topologies: Iterable[str], points: Sequence[Preference], point_topologies: Sequence[str]):
        if len(points) != len(point_topologies):
            raise ValueError("one topology per grid point expected")
        self.topologies = frozenset(topologies)
        self.points = [p if isinstance(p, Preference) else Preference(tuple(float(v) for v in p[0]), float(p[1]))
                       for p in points]
        self.point_topologies = list(point_topologies)

    @classmethod
    def from_manifest(cls, manifest) -> "Selector":
        """The selector of a bundle (:class:`dymu_rt.bundle.manifest.Manifest`)."""
        return cls(manifest.topologies, [Preference(tuple(p.r), float(p.c)) for p in manifest.points],
                   [p.topology for p in manifest.points])

    def select(self, pref: Preference, exact_topology: str) -> Selection:
        """The choice for ``pref``, given the topology id of the edge hypernet's tree at ``pref``."""
        if exact_topology in self.topologies:
            return Selection(exact_topology, EXACT, pref, None)
        i = self.nearest_point(pref)
        return Selection(self.point_topologies[i], NEAREST_GRID, self.points[i], self.points[i])

    def nearest_point(self, pref: Preference) -> int:
        """Index of the grid point nearest ``pref`` (the one metric, :func:`nearest`)."""
        if not self.points:
            raise ValidationError("the bundle has no grid points to fall back to")
        return nearest(pref, self.points)

    def nearest_r(self, r: Sequence[float]) -> tuple[tuple[float, ...], bool]:
        """The grid's task preference nearest ``r`` (L1; ties to the smallest in sorted order)
        and whether ``r`` was snapped to it: the latency budget chooses c along that r."""
        grid_rs = sorted({tuple(p.r) for p in self.points})
        if not grid_rs:
            raise ValidationError("the bundle has no grid points to fall back to")
        dist = [sum(abs(a - b) for a, b in zip(g, r)) for g in grid_rs]
        i = min(range(len(dist)), key=lambda k: dist[k])
        return grid_rs[i], dist[i] > 1e-9

    def points_at(self, r: Sequence[float]) -> list[tuple[Preference, str]]:
        """The grid points with task preference exactly ``r`` and their topologies, by c."""
        r = tuple(r)
        return sorted(((p, t) for p, t in zip(self.points, self.point_topologies) if tuple(p.r) == r),
                      key=lambda pt: pt[0].c)


def static_refusal(bundle, method, what: str) -> ValidationError:
    """The one refusal of a static bundle (one architecture, no resource control): ``what``
    says what cannot be honoured and how to proceed (e.g. "so c = 0.5 cannot be honoured; omit c")."""
    return ValidationError(f"bundle {bundle} holds one static architecture ({method}): it has no resource "
                           f"control, {what}")
