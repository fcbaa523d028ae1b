"""The typed manifest: one reader that validates against the schema (one BundleError line for
every malformed document), one writer, and the derived units (GMACs / GFLOPs)."""

import json
import shutil

import pytest

from dymu_rt.bundle import layout as L
from dymu_rt.bundle.manifest import MAX_DEPTH, Manifest, parse_manifest, read_manifest, write_manifest
from dymu_rt.core.errors import BundleError


@pytest.fixture(scope="module")
def doc():
    return json.loads((L.default_bundle_path() / "manifest.json").read_text())


def _edit(doc, path, value):
    d = json.loads(json.dumps(doc))
    *head, last = path
    target = d
    for k in head:
        target = target[k]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return d


def test_shipped_manifest_reads_typed(doc):
    m = read_manifest(L.default_bundle_path())
    assert m.n_tasks == 3 and m.task_names == ["semseg", "normals", "depth"]
    assert m.input_size == (64, 64) and len(m.points) == doc["grid"]["n_points"]
    tid = m.points[0].topology
    t = m.topologies[tid]
    assert t.macs == doc["topologies"][tid]["macs"]
    assert t.gmacs == pytest.approx(t.macs / 1e9) and t.gflops == pytest.approx(2 * t.macs / 1e9)
    assert m.bn_delta_size == doc["bn_delta_size"] and m.num_layers == doc["num_layers"]
    assert m.to_dict() == doc                                # round trip keeps every key


def test_to_dict_is_a_copy(doc):
    m = Manifest.from_dict(doc)
    d = m.to_dict()
    d["topologies"].clear()
    assert m.to_dict()["topologies"] and m.topologies


@pytest.mark.parametrize("path, value, message", [
    (("schema_version",), True, "schema_version true"),
    (("schema_version",), "2", "schema_version \"2\""),
    (("schema_version",), 99, "newer than this dymu-rt"),
    (("kind",), "other", "not a dymu-rt bundle manifest"),
    (("tasks",), KeyError, "lacks keys \\['tasks'\\]"),
    (("tasks",), {"semseg": 1}, "'tasks' must be a list"),
    (("bn_eps",), "tiny", "'bn_eps' = \"tiny\" must be a number"),
    (("bn_eps",), True, "'bn_eps' = true must be a number"),
    (("preprocessing", "input_size"), [64, "64"], "'preprocessing.input_size\\[1\\]'"),
    (("points", 0, "c"), None, "'points\\[0\\].c' = null must be a number"),
    (("points", 0, "topology"), "nope", "point 0 maps to unknown topology 'nope'"),
    (("controller", "edge_hypernet", "sha256"), 5, "controller.edge_hypernet.sha256"),
])
def test_malformed_manifest_is_one_line(doc, path, value, message):
    with pytest.raises(BundleError, match=message) as e:
        Manifest.from_dict(_edit(doc, path, value))
    assert "\n" not in str(e.value)


def test_topology_entry_types_checked(doc):
    tid = next(iter(doc["topologies"]))
    with pytest.raises(BundleError, match=f"'topologies.{tid}.macs' = 1.5 must be an integer"):
        Manifest.from_dict(_edit(doc, ("topologies", tid, "macs"), 1.5))


def test_deep_nesting_is_refused_without_recursion():
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BundleError, match=f"nests deeper than {MAX_DEPTH}"):
        parse_manifest(text)
    with pytest.raises(BundleError, match="not valid JSON"):
        parse_manifest("{not json")


def test_write_validates_before_writing(doc, tmp_path):
    root = tmp_path / "b"
    root.mkdir()
    write_manifest(root, doc)
    before = (root / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="schema_version"):
        write_manifest(root, _edit(doc, ("schema_version",), False))
    assert (root / "manifest.json").read_bytes() == before      # nothing half-written


def test_verify_bundle_checks_files(tmp_path):
    root = tmp_path / "b"
    shutil.copytree(L.default_bundle_path(), root)
    assert L.verify_bundle(root).topologies
    graph = next(iter(read_manifest(root).topologies.values())).file
    (root / graph).write_bytes(b"x")
    with pytest.raises(BundleError, match="is corrupt"):
        L.verify_bundle(root)
