"""The planted-bug guard (issue 28): every mutant in tests/mutants/mutants.py must be
caught by its tests, and every mutant's snippet must still be in the source.

Runs each mutant in its own throw-away copy of the package (tests/mutants/planted.py), two
at a time (DYMU_RT_MUTANT_JOBS). Cost: ~3-4 min on 2 cores (the figure for the current
list is in docs/testing.md); the list is the guard, so it is not marked slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import planted  # noqa: E402
from mutants import MUTANTS  # noqa: E402


def test_mutant_names_are_unique_and_entries_complete():
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    for m in MUTANTS:
        assert m.snippet != m.replacement and m.tests and m.behaviour, m.name
        assert not any("tests/mutants" in t for t in m.tests), f"{m.name}: the guard must not run itself"


def test_every_snippet_is_still_in_the_source():
    """Cheap and first: a stale entry names itself here before the long run below."""
    stale = [why for m in MUTANTS if (why := planted.check_snippet(m))]
    assert not stale, "\n".join(stale)


def test_every_planted_bug_is_caught():
    results = planted.run()
    print("\n" + planted.table(results))
    bad = planted.failures(results)
    assert not bad, "planted bugs the tests do not catch:\n" + "\n".join(bad)
