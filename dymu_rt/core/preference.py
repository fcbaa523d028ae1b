"""Preferences (r, c): the one place that parses, validates, samples and enumerates them.

* ``r`` is the task preference, a point of the simplex S_N (r_i >= 0, Σ r_i = 1).
* ``c`` is the resource preference in [0, 1]; larger c = more frugal (paper, §3).

Everything else in dymu-rt (CLI, trainer, evaluation, bundle build, runtime) calls this
module, so a preference is checked the same way everywhere and a bad one is refused with
one line naming the value and what was expected (:class:`~dymu_rt.core.errors.ValidationError`).

Grids use exact rational arithmetic (:class:`fractions.Fraction`): with float steps,
``0.1 * 3`` is not ``0.3`` and a simplex enumeration silently loses or duplicates points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Optional, Sequence, Union

import numpy as np

from .errors import ValidationError

SUM_TOLERANCE = 1e-6

#: The most points :func:`grid` enumerates (build and eval refuse more, saying how many the
#: request would make). N=3 at step 0.1 is 726 points, N=5 at 0.1 is 11,011, N=3 at 0.02 is
#: 67,626; past this a grid costs gigabytes and hours without telling a user anything new.
MAX_GRID_POINTS = 100_000

StepLike = Union[str, float, int, Fraction]


@dataclass(frozen=True)
class Preference:
    """A validated preference: task preference ``r`` (simplex) and resource preference ``c``.

    Build one with :func:`make_preference` when the values come from a user; the
    constructor itself does not validate (the grid and the sampler produce valid values).
    """

    r: tuple[float, ...]
    c: float

    @property
    def n_tasks(self) -> int:
        """Number of tasks N (length of r)."""
        return len(self.r)


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def format_r(r: Sequence[float]) -> str:
    """A task preference as a person reads it, exactly: ``uniform (1/3 each)`` when every
    weight is equal (not ``0.3,0.3,0.3``, which sums to 0.9), else each weight to 4
    significant digits (``0.8,0.1,0.1``; a weight that 4 digits do not hold is shown as
    the fraction it is, e.g. ``2/3``)."""
    vals = [float(v) for v in r]
    if len(vals) > 1 and max(vals) - min(vals) < 1e-9:
        return f"uniform (1/{len(vals)} each)"
    parts = []
    for v in vals:
        text = f"{v:.4g}"
        if abs(float(text) - v) > 1e-9:
            frac = Fraction(v).limit_denominator(64)
            if abs(float(frac) - v) < 1e-9:
                text = f"{frac.numerator}/{frac.denominator}"
        parts.append(text)
    return ",".join(parts)


def _number(v) -> float | None:
    """v as a float if it is one real number (not a bool), else None."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0 and not isinstance(v, (str, bytes)):
        v = v.item()   # 0-d numpy arrays and torch tensors
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, Fraction, np.integer, np.floating)):
        return None
    return float(v)


def _to_floats(value, what: str) -> list[float]:
    """Turn "0.6, 0.2,0.2" or a sequence of numbers into a list of floats, or refuse."""
    example = "expected comma-separated numbers, e.g. 0.6,0.2,0.2"
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        out = []
        for p in parts:
            try:
                out.append(float(Fraction(p)) if "/" in p else float(p))
            except (ValueError, ZeroDivisionError, OverflowError):
                raise ValidationError(f"{what} = {value!r}: {p!r} is not a number; {example}") from None
        return out
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()   # numpy arrays, torch tensors
        if not isinstance(value, list):
            value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"{what} = {value!r}: {example}")
    out = []
    for v in value:
        f = _number(v)
        if f is None:
            raise ValidationError(f"{what} = {value!r}: {v!r} is not a number; {example}")
        out.append(f)
    return out


def parse_r(text_or_seq, n_tasks: int, normalize: bool = False) -> tuple[float, ...]:
    """Validate a task preference r: exactly ``n_tasks`` finite entries >= 0 summing to 1.

    Accepts "0.6,0.2,0.2" (spaces allowed) or a sequence of numbers. With
    ``normalize=True`` the entries are rescaled to sum to 1 (an all-zero, negative or
    non-finite r is still refused). Returns a tuple of floats.
    """
    vals = _to_floats(text_or_seq, "r")
    shown = text_or_seq.strip() if isinstance(text_or_seq, str) else _fmt(vals)
    if len(vals) != n_tasks:
        raise ValidationError(f"r = {shown} has {len(vals)} entries; expected N={n_tasks} "
                              f"(one per task) entries >= 0 summing to 1")
    if not all(math.isfinite(v) for v in vals):
        raise ValidationError(f"r = {shown} has a non-finite entry; expected N={n_tasks} "
                              f"finite entries >= 0 summing to 1")
    if any(v < 0 for v in vals):
        raise ValidationError(f"r = {shown} has a negative entry; expected N={n_tasks} entries >= 0 "
                              f"summing to 1")
    if normalize:
        # Scale by the largest entry first: 1e308 + 1e308 overflows a float sum.
        top = max(vals)
        if top <= 0:
            raise ValidationError(f"r = {shown} sums to 0; cannot normalize (expected N={n_tasks} "
                                  f"entries >= 0, at least one > 0)")
        scaled = [v / top for v in vals]
        total = math.fsum(scaled)
        return tuple(v / total for v in scaled)
    try:
        total = math.fsum(vals)
    except OverflowError:               # 1e308 + 1e308
        raise ValidationError(f"r = {shown} sums to more than a float holds; expected N={n_tasks} entries "
                              f">= 0 summing to 1 (use --normalize to rescale)") from None
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValidationError(f"r = {shown} sums to {total:g}; expected N={n_tasks} entries >= 0 "
                              f"summing to 1 (use --normalize to rescale)")
    return tuple(vals)


def parse_c(value) -> float:
    """Validate a resource preference c: one finite number in [0, 1] (larger = more frugal)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            c = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError, OverflowError):
            raise ValidationError(f"c = {value!r} is not a number; expected a value in [0, 1] "
                                  f"(larger = more frugal)") from None
    else:
        c = _number(value)
        if c is None:
            raise ValidationError(f"c = {value!r} is not a number; expected a value in [0, 1]")
    if not math.isfinite(c) or not 0.0 <= c <= 1.0:
        raise ValidationError(f"c = {c:g} is outside [0, 1]; expected a resource preference in "
                              f"[0, 1] (larger = more frugal)")
    return c


def make_preference(r, c, n_tasks: int, normalize: bool = False) -> Preference:
    """Validate user-given (r, c) into a :class:`Preference` (see :func:`parse_r`, :func:`parse_c`)."""
    return Preference(parse_r(r, n_tasks, normalize=normalize), parse_c(c))


# -- sampling (training distribution, Algorithm 1) ------------------------------------

# The paper's evaluation protocol (Sec. 4, "Evaluation"): HV and uniformity over 20 r and
# cost over 1000 r sampled *uniformly* from the simplex S_N, i.e. Dir(1, ..., 1). Training
# samples Dir(0.2) (Algorithm 1); eval, compare and the benchmarks take ``eta`` to use
# another Dir(eta) on purpose.
EVAL_ETA = 1.0


def n_active(r, n_tasks: int, tau: Optional[float] = None) -> int:
    """How many tasks of ``r`` are active (r_i >= τ, τ = 0.6/N by default; the regularizer's split)."""
    t = 0.6 / n_tasks if tau is None else tau
    return int(sum(1 for v in r if v >= t))

def _dirichlet(rng: np.random.Generator, n_tasks: int, k: int, eta: float) -> np.ndarray:
    """k draws of Dir(eta, ..., eta), redrawing the (rare) rows that underflow to NaN/0."""
    out = rng.dirichlet(np.full(n_tasks, eta), size=k)
    bad = ~np.isfinite(out).all(axis=1) | (out.sum(axis=1) <= 0)
    while bad.any():   # tiny eta can underflow every gamma draw of a row
        out[bad] = rng.dirichlet(np.full(n_tasks, eta), size=int(bad.sum()))
        bad = ~np.isfinite(out).all(axis=1) | (out.sum(axis=1) <= 0)
    return out / out.sum(axis=1, keepdims=True)


def _check_sampling(n_tasks: int, k: int, eta: float) -> None:
    if not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise ValidationError(f"n_tasks = {n_tasks!r}: expected a positive integer")
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValidationError(f"k = {k!r}: expected a non-negative integer number of preferences")
    if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
        raise ValidationError(f"eta = {eta!r}: expected a Dirichlet concentration > 0")


def sample_preferences(n_tasks: int, k: int, rng: np.random.Generator, eta: float = 0.2) -> list[Preference]:
    """k preferences from the training distribution: r ~ Dir(eta, ..., eta), c ~ U(0, 1)."""
    _check_sampling(n_tasks, k, eta)
    rs = _dirichlet(rng, n_tasks, k, eta)
    cs = rng.uniform(0.0, 1.0, size=k)
    return [Preference(tuple(float(v) for v in r), float(c)) for r, c in zip(rs, cs)]


def sample_r(n_tasks: int, rng: np.random.Generator, batch: int | None = None, eta: float = 0.2):
    """r ~ Dir(eta) as a float32 array: [N], or [batch, N] when ``batch`` is given
    (``torch.from_numpy`` makes it a tensor without a copy; this module stays torch-free).

    Drawn from the numpy ``rng`` (not torch's global generator) so runs are reproducible
    from one seeded generator.
    """
    _check_sampling(n_tasks, 1 if batch is None else batch, eta)
    r = _dirichlet(rng, n_tasks, 1 if batch is None else batch, eta).astype(np.float32)
    return r[0] if batch is None else r


# -- exact grids -------------------------------------------------------------------------

def parse_step(step: StepLike, what: str = "step") -> Fraction:
    """A grid step as an exact Fraction that divides 1 (e.g. "0.1", 0.1, "1/10", Fraction(1, 10)).

    A float is read through its shortest decimal string (0.1 -> 1/10, not the binary
    0.1000000000000000055...). Refuses steps <= 0, > 1, or that do not divide 1 exactly.
    """
    if isinstance(step, bool):
        raise ValidationError(f"{what} = {step!r}: expected a number such as 0.1 or 1/10")
    try:
        if isinstance(step, Fraction):
            f = step
        elif isinstance(step, (float, np.floating)):
            if not math.isfinite(step):
                raise ValueError
            f = Fraction(repr(float(step)))
        elif isinstance(step, (int, np.integer)):
            f = Fraction(int(step))
        elif isinstance(step, str):
            f = Fraction(step.strip())
        else:
            raise ValueError
    except (ValueError, ZeroDivisionError):
        raise ValidationError(f"{what} = {step!r}: expected a number such as 0.1 or 1/10") from None
    if f <= 0 or f > 1:
        raise ValidationError(f"{what} = {step}: expected a value in (0, 1] that divides 1, e.g. 0.1")
    if (1 / f).denominator != 1:
        try:
            steps = f"{float(1 / f):g}"
        except OverflowError:           # e.g. 10**500/3: too many steps for a float
            steps = "too many to count"
        raise ValidationError(f"{what} = {step}: 1 is not a whole number of steps ({steps}); "
                              f"expected a step that divides 1, e.g. 0.1, 0.125, 1/3")
    return f


def _check_n_tasks(n_tasks) -> int:
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise ValidationError(f"n_tasks = {n_tasks!r}: expected a positive integer")
    return int(n_tasks)


def count_grid_r(n_tasks: int, step: StepLike) -> int:
    """How many r :func:`grid_r` makes, without making them: C(m + N - 1, N - 1), m = 1/step.

    Stars and bars: an r on the grid is m steps shared among N tasks.
    """
    n = _check_n_tasks(n_tasks)
    m = int(1 / parse_step(step))
    return math.comb(m + n - 1, n - 1)


def count_grid(n_tasks: int, step: StepLike, c_step: StepLike | None = None) -> int:
    """How many points :func:`grid` makes: :func:`count_grid_r` × (1/c_step + 1)."""
    n_c = int(1 / parse_step(step if c_step is None else c_step, "c_step")) + 1
    return count_grid_r(n_tasks, step) * n_c


def _count_text(k: int) -> str:
    """A point count for a message: exact when short, else its order of magnitude."""
    if k <= 10**15:
        return f"{k:,}"
    # From the bit length: str() of a 5000-digit int is refused by Python (int_max_str_digits).
    return f"about 10^{int(k.bit_length() * math.log10(2))}"


def check_grid_size(n_tasks: int, step: StepLike, c_step: StepLike | None = None,
                    limit: int = MAX_GRID_POINTS) -> int:
    """The grid's point count, or a ValidationError saying how many points it would make
    when that is above ``limit`` (:data:`MAX_GRID_POINTS`)."""
    k = count_grid(n_tasks, step, c_step)
    if k > limit:
        cs = step if c_step is None else c_step
        raise ValidationError(
            f"grid step {step} (c step {cs}) for N={n_tasks} tasks makes {_count_text(k)} preference points; "
            f"the limit is {limit:,}: use a coarser step (e.g. 0.1 gives {count_grid(n_tasks, '0.1'):,})")
    return k


def grid_r(n_tasks: int, step: StepLike) -> list[tuple[Fraction, ...]]:
    """Every r on the simplex whose components are multiples of ``step`` (exact Fractions).

    There are C(m + N - 1, N - 1) of them for m = 1/step (N=3, step 0.1: 66), in
    lexicographically decreasing order of (r_1, r_2, ...) — r = (1, 0, ..., 0) first.
    """
    n_tasks = _check_n_tasks(n_tasks)
    s = parse_step(step)
    m = int(1 / s)
    k = count_grid_r(n_tasks, step)
    if k > MAX_GRID_POINTS:
        raise ValidationError(f"grid step {step} for N={n_tasks} tasks makes {_count_text(k)} task "
                              f"preferences r; the limit is {MAX_GRID_POINTS:,}: use a coarser step")
    out = []
    # Stars and bars: choose N-1 bar positions among m + N - 1 slots.
    for bars in combinations(range(m + n_tasks - 1), n_tasks - 1):
        counts, prev = [], -1
        for b in bars:
            counts.append(b - prev - 1)
            prev = b
        counts.append(m + n_tasks - 1 - prev - 1)
        out.append(tuple(Fraction(k) * s for k in counts))
    out.sort(reverse=True)
    return out


def grid_c(c_step: StepLike) -> list[Fraction]:
    """c in {0, c_step, 2 c_step, ..., 1} (exact)."""
    s = parse_step(c_step, "c_step")
    if 1 / s + 1 > MAX_GRID_POINTS:
        raise ValidationError(f"c_step = {c_step} makes {_count_text(int(1 / s) + 1)} values of c; "
                              f"the limit is {MAX_GRID_POINTS:,}: use a coarser step")
    return [k * s for k in range(int(1 / s) + 1)]


def grid(n_tasks: int, step: StepLike, c_step: StepLike | None = None) -> list[Preference]:
    """The preference grid: :func:`grid_r` × c in {0, c_step, ..., 1} as float Preferences.

    ``c_step`` defaults to ``step``. Order: for each r (grid_r order), every c ascending.
    N=3, step 0.1 -> 66 × 11 = 726 points. Refuses grids of more than
    :data:`MAX_GRID_POINTS` points before making any (:func:`check_grid_size`).
    """
    check_grid_size(n_tasks, step, c_step)
    rs = grid_r(n_tasks, step)
    cs = grid_c(step if c_step is None else c_step)
    return [Preference(tuple(float(v) for v in r), float(c)) for r in rs for c in cs]


def preference_distance(a: Preference, b: Preference) -> float:
    """The metric of :func:`nearest`: L1 distance on r plus |Δc|.

    Both terms live on comparable scales (L1 on the simplex is in [0, 2], |Δc| in [0, 1]);
    L1 is what a user perceives as "how much importance moved between tasks".
    """
    return float(sum(abs(x - y) for x, y in zip(a.r, b.r)) + abs(a.c - b.c))


def nearest(pref: Preference, candidates: Sequence[Preference]) -> int:
    """Index of the candidate closest to ``pref`` under :func:`preference_distance`.

    Ties go to the lowest index, so the answer is deterministic. Candidates may also be
    (r, c) pairs. Used by the runtime's nearest-grid-point fallback.
    """
    if len(candidates) == 0:
        raise ValidationError("nearest(): no candidate preferences to choose from")
    best, best_d = -1, math.inf
    for i, cand in enumerate(candidates):
        if not isinstance(cand, Preference):
            cand = Preference(tuple(float(v) for v in cand[0]), float(cand[1]))
        if len(cand.r) != len(pref.r):
            raise ValidationError(f"candidate {i} has {len(cand.r)} task preferences, expected "
                                  f"N={len(pref.r)}")
        d = preference_distance(pref, cand)
        if d < best_d:
            best, best_d = i, d
    return best
