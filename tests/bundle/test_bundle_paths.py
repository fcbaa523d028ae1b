"""Bundle path rules (dymu_rt.bundle.paths) as unit tests: names, relative paths, links,
containment — each layer on its own, so a layer that stops checking fails here even when
another layer would still stop the attack end to end (tests/security covers that). < 1 s."""

from __future__ import annotations

import os

import pytest

from dymu_rt.bundle import paths as P
from dymu_rt.core.errors import BundleError


@pytest.mark.parametrize("tid", ["0123abcd", "f" * 64])
def test_topology_ids_accepted(tid):
    assert P.check_topology_id(tid) == tid


@pytest.mark.parametrize("tid", ["0123abc", "f" * 65, "0123ABCD", "../../x0", 12345678, None, "0123abcd\n"])
def test_topology_ids_refused(tid):
    with pytest.raises(BundleError, match="is not a topology id"):
        P.check_topology_id(tid)


@pytest.mark.parametrize("name", ["x86-64-cpu", "onnxruntime", "a.b_c", "A" * 128])
def test_names_accepted(name):
    assert P.check_name(name, "profile") == name


@pytest.mark.parametrize("name", [".", "..", "a/b", "", "A" * 129, "a b", None])
def test_names_refused(name):
    with pytest.raises(BundleError, match=r"must match \[A-Za-z0-9._-\]\+"):
        P.check_name(name, "profile")


@pytest.mark.parametrize("rel", ["graphs/a.onnx", "manifest.json", "a/b/c/d/e/f", "_x/y.z"])
def test_relpaths_accepted(rel):
    assert P.check_relpath(rel) == rel


@pytest.mark.parametrize("rel, msg", [
    ("../x", "not a plain path"), ("a/../b", "not a plain path"), ("..", "not a plain path"),
    (".hidden", "not a plain path"), ("a//b", "not a plain path"), ("a/b/c/d/e/f/g", "at most 6 parts"),
    ("/etc/passwd", "not a relative path"), ("a\\b", "not a relative path"), ("", "not a relative path"),
    (None, "not a relative path"), ("a/-b/../c", "not a plain path"),
])
def test_relpaths_refused(rel, msg):
    with pytest.raises(BundleError, match=msg):
        P.check_relpath(rel)


def test_inside_returns_the_path_of_a_regular_file(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.onnx").write_bytes(b"x")
    assert P.inside(tmp_path, "g/a.onnx") == tmp_path / "g" / "a.onnx"
    assert P.inside(tmp_path, "g/new.onnx", must_exist=False) == tmp_path / "g" / "new.onnx"
    with pytest.raises(BundleError, match="file g/missing.onnx is missing"):
        P.inside(tmp_path, "g/missing.onnx")
    with pytest.raises(BundleError, match="g is not a regular file"):
        P.inside(tmp_path, "g")


@pytest.mark.parametrize("where", ["file", "folder", "dangling"])
def test_links_are_refused(tmp_path, where):
    root, outside = tmp_path / "b", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"secret")
    if where == "file":
        (root / "w.bin").symlink_to(outside / "w.bin")
        rel = "w.bin"
    elif where == "folder":
        (root / "graphs").symlink_to(outside)
        rel = "graphs/w.bin"
    else:
        (root / "w.bin").symlink_to(outside / "nothing")
        rel = "w.bin"
    with pytest.raises(BundleError, match="is a symbolic link"):
        P.inside(root, rel, must_exist=False)


def test_containment_is_checked_even_if_the_link_check_were_bypassed(tmp_path, monkeypatch):
    """Two independent layers: with the link walk disabled, the resolved path must still
    be refused for leaving the bundle."""
    root, outside = tmp_path / "b", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"secret")
    (root / "graphs").symlink_to(outside)
    monkeypatch.setattr(P, "_refuse_links", lambda r, rel, where: r / rel)
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        P.inside(root, "graphs/w.bin")
    # a sibling folder whose name starts with the bundle's is outside too
    sibling = tmp_path / "b2"
    sibling.mkdir()
    (sibling / "x").write_bytes(b"x")
    (root / "x").symlink_to(sibling / "x")
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        P.inside(root, "x")


def test_bundle_root_resolves_a_user_link_to_the_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert P.bundle_root(tmp_path / "link") == real.resolve()
    with pytest.raises(BundleError, match="bundle not found"):
        P.bundle_root(tmp_path / "nope")


def _onnx_with_external(location: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    t = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("float_data")
    e = t.external_data.add()
    e.key, e.value = "location", location
    g = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [t])
    return helper.make_model(g).SerializeToString()


def test_external_data_must_be_a_plain_file_beside_the_graph(tmp_path):
    pytest.importorskip("onnx")
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "a.onnx").write_bytes(_onnx_with_external("a.data"))
    (tmp_path / "graphs" / "a.data").write_bytes(b"\0" * 4)
    assert P.external_locations((tmp_path / "graphs" / "a.onnx").read_bytes()) == {"a.data"}
    P.check_external_data(tmp_path, "graphs/a.onnx")
    for loc in ("../outside.data", "/etc/passwd", "sub/a.data", ".."):
        (tmp_path / "graphs" / "b.onnx").write_bytes(_onnx_with_external(loc))
        with pytest.raises(BundleError, match="outside the graph's folder"):
            P.check_external_data(tmp_path, "graphs/b.onnx")
    (tmp_path / "graphs" / "c.onnx").write_bytes(_onnx_with_external("missing.data"))
    with pytest.raises(BundleError, match="missing"):
        P.check_external_data(tmp_path, "graphs/c.onnx")
    (tmp_path / "graphs" / "d.onnx").write_bytes(b"\xff\xff\xff")
    with pytest.raises(BundleError, match="not a readable ONNX model"):
        P.check_external_data(tmp_path, "graphs/d.onnx")
    os.remove(tmp_path / "graphs" / "a.data")
