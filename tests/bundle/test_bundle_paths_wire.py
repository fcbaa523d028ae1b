"""The rest of dymu_rt.bundle.paths (issue 28, second round; mutmut survivors): the ONNX wire
reader on hand-encoded protobuf bytes (encoder written here from the protobuf spec, checked
against the onnx package where it is installed), the exact refusal messages a user reads,
and the containment check on bundle folders whose names end in characters ``rstrip`` would
eat. < 1 s in all."""

from __future__ import annotations

import os

import pytest

from dymu_rt.bundle import paths as P
from dymu_rt.core.errors import BundleError


# -- a protobuf encoder, from the spec (varint: 7 bits per byte, low group first, MSB = more) --

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(num: int, wire: int) -> bytes:
    return varint(num << 3 | wire)


def ld(num: int, payload: bytes) -> bytes:          # length-delimited (wire type 2)
    return key(num, 2) + varint(len(payload)) + payload


def vi(num: int, value: int) -> bytes:              # varint field (wire type 0)
    return key(num, 0) + varint(value)


def tensor(location: bytes | None = None, external: bool = True, entry_value: bool = True) -> bytes:
    """A TensorProto: dims 1 (field 1), data_type FLOAT (field 2 = 1), name (8), and for an
    external one data_location EXTERNAL (14 = 1) and an external_data entry (13: key 1,
    value 2) ``location``."""
    body = vi(1, 4) + vi(2, 1) + ld(8, b"w")
    if location is not None:
        entry = ld(1, b"location") + (ld(2, location) if entry_value else b"")
        body += ld(13, ld(1, b"offset") + ld(2, b"0")) + ld(13, entry)
    if external:
        body += vi(14, 1)
    return body


def model(*tensors: bytes) -> bytes:
    """ModelProto{ir_version 7 (field 1), graph (7) {initializer (5) ...}}."""
    return vi(1, 7) + ld(7, b"".join(ld(5, t) for t in tensors))


# -- _varint / _fields -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16384, 2**35 + 5, 2**63 - 1, 2**64 - 1])
def test_varint_round_trips_with_the_spec_encoding(n):
    enc = varint(n)
    assert P._varint(enc + b"\x01", 0) == (n, len(enc))
    assert P._varint(b"\x00\x00" + enc, 2) == (n, 2 + len(enc))
    if n == 300:
        assert enc == b"\xac\x02"                      # the protobuf documentation's example


def test_varint_refuses_truncation_and_an_eleventh_byte():
    for bad, at in ((b"", 0), (b"\x80", 0), (b"\xff\xff", 0), (b"\x01", 1)):
        with pytest.raises(ValueError) as e:
            P._varint(bad, at)
        assert str(e.value) == "truncated varint"
    # ten bytes reach shift 63 (a uint64): accepted; an eleventh continuation byte: refused
    assert P._varint(b"\xff" * 9 + b"\x01", 0) == (2**64 - 1, 10)
    with pytest.raises(ValueError, match="^truncated varint$"):
        P._varint(b"\xff" * 10 + b"\x01", 0)


def test_fields_skip_fixed64_and_fixed32_and_slice_length_delimited():
    buf = (vi(1, 150) + key(2, 1) + b"\x01" * 8 + key(3, 5) + b"\x02" * 4 + ld(4, b"abc")
           + key(5, 1) + b"\x03" * 8 + vi(6, 300))
    assert list(P._fields(buf)) == [(1, 0, 150), (2, 1, None), (3, 5, None), (4, 2, b"abc"), (5, 1, None),
                                    (6, 0, 300)]
    assert list(P._fields(b"")) == []


@pytest.mark.parametrize("buf, msg", [
    (key(1, 1) + b"\x00" * 7, "truncated field"),             # fixed64 one byte short
    (key(1, 5) + b"\x00" * 3, "truncated field"),             # fixed32 one byte short
    (key(1, 2) + varint(5) + b"abcd", "truncated field"),      # length 5, 4 bytes follow
    (key(1, 3), "wire type 3"), (key(1, 4), "wire type 4"), (key(1, 6), "wire type 6"), (key(1, 7), "wire type 7"),
    (key(1, 0), "truncated varint"),                           # a varint field with no value
])
def test_fields_refuse_malformed_messages_with_the_reason(buf, msg):
    with pytest.raises(ValueError) as e:
        list(P._fields(buf))
    assert str(e.value) == msg


# -- external_locations ----------------------------------------------------------------------------

def test_only_external_tensors_count_and_every_one_is_found():
    internal = tensor(location=None, external=False)
    assert P.external_locations(model(internal)) == set()
    assert P.external_locations(model(internal, tensor(b"a.bin"), internal, tensor(b"b.bin"))) == {"a.bin", "b.bin"}
    # an external_data entry without data_location EXTERNAL is not external
    assert P.external_locations(model(tensor(b"c.bin", external=False))) == set()


def test_external_tensor_without_or_with_an_empty_location_reads_as_the_empty_name():
    assert P.external_locations(model(tensor(None))) == {""}
    assert P.external_locations(model(tensor(b"x", entry_value=False))) == {""}
    assert P.external_locations(model(tensor(b""))) == {""}


def test_a_location_that_is_not_utf8_is_read_with_replacement_characters():
    assert P.external_locations(model(tensor(b"a\xff.bin"))) == {"a\ufffd.bin"}


def test_nested_graphs_sparse_tensors_and_functions_are_searched():
    then_graph = ld(5, tensor(b"in_if.bin"))                              # GraphProto.initializer
    attr_g = ld(6, then_graph)                                            # AttributeProto.g
    attr_t = ld(5, tensor(b"attr_t.bin")) + ld(10, tensor(b"attr_ts.bin"))
    sparse = ld(1, tensor(b"sp_values.bin")) + ld(2, tensor(b"sp_idx.bin"))
    node = ld(5, attr_g) + ld(5, attr_t) + ld(5, ld(11, then_graph.replace(b"in_if", b"in_gs")))
    graph = ld(1, node) + ld(15, sparse) + ld(5, tensor(b"top.bin"))
    function = ld(7, ld(5, ld(5, tensor(b"fn.bin"))))                     # FunctionProto.node.attribute.t
    buf = vi(1, 7) + ld(7, graph) + ld(25, function)
    assert P.external_locations(buf) == {"in_if.bin", "attr_t.bin", "attr_ts.bin", "sp_values.bin",
                                         "sp_idx.bin", "in_gs.bin", "top.bin", "fn.bin"}


def test_the_reader_agrees_with_the_onnx_package():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def ext(name, loc):
        t = helper.make_tensor(name, TensorProto.FLOAT, [1], [1.0])
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("float_data")
        e = t.external_data.add()
        e.key, e.value = "location", loc
        return t

    inner = helper.make_graph([helper.make_node("Identity", ["v"], ["o"])], "inner", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])], [ext("v", "inner.bin")])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=inner, else_branch=inner)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                          [ext("w", "w.bin"), helper.make_tensor("k", TensorProto.FLOAT, [1], [2.0])])
    m = helper.make_model(g)
    from onnx.external_data_helper import _get_all_tensors

    want = {e.value for t in _get_all_tensors(m) if t.data_location == TensorProto.EXTERNAL
            for e in t.external_data if e.key == "location"}
    assert want == {"w.bin", "inner.bin"}
    assert P.external_locations(m.SerializeToString()) == want
    assert onnx is not None


# -- the messages a user reads ---------------------------------------------------------------------

def test_refusals_name_the_value_and_the_default_subject():
    with pytest.raises(BundleError) as e:
        P.check_topology_id("NOPE")
    assert str(e.value) == "topology id 'NOPE' is not a topology id (expected 8-64 lowercase hex digits)"
    with pytest.raises(BundleError) as e:
        P.check_name("a b", "profile")
    assert str(e.value) == "profile 'a b' must match [A-Za-z0-9._-]+ and not be '.' or '..'"
    with pytest.raises(BundleError) as e:
        P.check_relpath("/etc/passwd")
    assert str(e.value) == "file '/etc/passwd' is not a relative path inside the bundle"
    with pytest.raises(BundleError) as e:
        P.check_relpath("a/../b")
    assert str(e.value).startswith("file 'a/../b' is not a plain path inside the bundle (expected at most 6 parts")


def test_long_values_are_cut_to_80_characters():
    assert P._short("x" * 78) == "'" + "x" * 78 + "'"                # repr 80 chars: kept whole
    cut = P._short("y" * 79)                                            # repr 81 chars: cut
    assert cut == "'" + "y" * 76 + "..." and len(cut) == 80
    assert P._short(None) == "None"
    with pytest.raises(BundleError) as e:
        P.check_topology_id("z" * 200)
    assert str(e.value).startswith("topology id '" + "z" * 76 + "... is not")


def test_inside_names_what_it_checks(tmp_path):
    with pytest.raises(BundleError) as e:
        P.inside(tmp_path, "../x")
    assert str(e.value).startswith("file '../x' is not a plain path")
    with pytest.raises(BundleError) as e:
        P.inside(tmp_path, "../x", "graph")
    assert str(e.value).startswith("graph '../x' is not a plain path")
    # a part below the root that is a file, not a folder: lstat fails with ENOTDIR
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(BundleError) as e:
        P.inside(tmp_path, "f/x", "graph")
    assert str(e.value) == "graph f/x: cannot be checked (Not a directory)"
    with pytest.raises(BundleError) as e:
        P.check_external_data(tmp_path, "../g.onnx")
    assert str(e.value).startswith("graph '../g.onnx' is not a plain path")


@pytest.mark.parametrize("suffix", ["X", " ", "XX"])
def test_containment_holds_for_folder_names_ending_in_any_character(tmp_path, suffix):
    """The root is compared as ``base + "/"``; stripping more than the slash (``rstrip(None)``
    eats a trailing space, ``rstrip("X/")`` an X) would refuse a file that is inside."""
    root = tmp_path / f"bundle{suffix}"
    (root / "graphs").mkdir(parents=True)
    (root / "graphs" / "a.onnx").write_bytes(b"x")
    assert P.inside(root, "graphs/a.onnx") == root / "graphs" / "a.onnx"
    assert P.inside(str(root) + "/", "graphs/a.onnx") == root / "graphs" / "a.onnx"


def test_external_data_refusal_names_the_location(tmp_path):
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "g.onnx").write_bytes(model(tensor(b"../../etc/passwd")))
    with pytest.raises(BundleError) as e:
        P.check_external_data(tmp_path, "graphs/g.onnx")
    assert str(e.value) == (f"bundle {tmp_path}: graph graphs/g.onnx stores tensors at '../../etc/passwd', "
                            "outside the graph's folder; refused")
    (tmp_path / "graphs" / "ok.onnx").write_bytes(model(tensor(b"ok.bin")))
    (tmp_path / "graphs" / "ok.bin").write_bytes(b"\0" * 4)
    P.check_external_data(tmp_path, "graphs/ok.onnx")
    os.remove(tmp_path / "graphs" / "ok.bin")
    with pytest.raises(BundleError, match="file graphs/ok.bin is missing"):
        P.check_external_data(tmp_path, "graphs/ok.onnx")


def test_external_data_of_a_graph_at_the_bundle_root_is_refused_naming_the_graph(tmp_path):
    """Bundles keep graphs in graphs/; a graph at the root resolves its data as './x.bin',
    which the relative-path rule refuses (nothing is read), and the message says whose data."""
    (tmp_path / "g.onnx").write_bytes(model(tensor(b"x.bin")))
    (tmp_path / "x.bin").write_bytes(b"\0" * 4)
    with pytest.raises(BundleError) as e:
        P.check_external_data(tmp_path, "g.onnx")
    assert str(e.value).startswith("external data of g.onnx './x.bin' is not a plain path inside the bundle")
