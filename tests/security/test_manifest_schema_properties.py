"""Property-based tests (hypothesis) of the manifest validator: whatever a manifest holds,
reading it gives the manifest back or one BundleError line, never another exception."""

from __future__ import annotations

import copy
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dymu_rt.bundle.manifest import validate_manifest
from dymu_rt.core.errors import BundleError
from dymu_rt.runtime import default_bundle_path

GOOD = json.loads((default_bundle_path() / "manifest.json").read_text())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    """Every key path of a JSON document (lists: first element only, to keep it small)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list) and obj:
        yield from _paths(obj[0], prefix + (0,))


PATHS = [p for p in _paths(GOOD) if p]


def _set(doc, path, value):
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(PATHS), value=json_values)
def test_any_replaced_value_is_accepted_or_one_line(path, value):
    m = copy.deepcopy(GOOD)
    _set(m, path, value)
    try:
        validate_manifest(m)
    except BundleError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=80, deadline=None)
@given(path=st.sampled_from(PATHS))
def test_any_deleted_key_is_accepted_or_one_line(path):
    m = copy.deepcopy(GOOD)
    node = m
    for k in path[:-1]:
        node = node[k]
    if isinstance(node, dict):
        del node[path[-1]]
    else:
        node.clear()
    try:
        validate_manifest(m)
    except BundleError as e:
        assert str(e) and "\n" not in str(e)


@settings(max_examples=20, deadline=None)
@given(depth=st.integers(17, 5000))
def test_deep_nesting_is_refused_without_recursion(depth):
    m = copy.deepcopy(GOOD)
    deep = []
    for _ in range(depth):
        deep = [deep]
    m["build"] = {"x": deep}           # a free-form section: only the nesting limit stops it
    try:
        validate_manifest(m)
    except BundleError as e:
        assert "nested" in str(e)
    else:
        raise AssertionError("a nesting deeper than the limit was accepted")


def test_the_good_manifest_passes():
    validate_manifest(copy.deepcopy(GOOD))        # raises if the shipped manifest were refused
