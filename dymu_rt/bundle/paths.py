"""Every path a bundle names stays inside the bundle: strict names, no links, no escapes.

A bundle is a file someone hands you. Its manifest names topology ids (which become file
and folder names), files, and its ONNX graphs name external-data files; any of them could
be ``../../somewhere`` or ``/etc/passwd``, and any file or folder in it could be a
symbolic link to elsewhere. The rules, applied before anything is opened or written:

* a topology id is 8-64 lowercase hex digits (what :func:`dymu_rt.core.tree.topology_id`
  makes); backend and profile names match ``[A-Za-z0-9._-]+`` (not ``.``/``..``);
* a file entry is a relative POSIX path of at most :data:`MAX_DEPTH` parts, each
  ``[A-Za-z0-9_][A-Za-z0-9._-]*`` (no ``..``, no absolute path, no backslash);
* :func:`inside` resolves such a path under the bundle root and refuses it if any part of
  it (folders included) is a symbolic link, or the file is not a regular file;
* :func:`check_external_data` refuses an ONNX graph whose external data is anywhere but a
  plain file in the graph's own folder.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Union

from dymu_rt.core.errors import BundleError

TOPOLOGY_ID_RE = re.compile(r"[0-9a-f]{8,64}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_DEPTH = 6


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_topology_id(tid, where: str = "topology id") -> str:
    """``tid`` if it is a topology id (8-64 lowercase hex digits), else a BundleError."""
    if not isinstance(tid, str) or not TOPOLOGY_ID_RE.fullmatch(tid):
        raise BundleError(f"{where} {_short(tid)} is not a topology id (expected 8-64 lowercase hex digits)")
    return tid


def check_name(name, where: str) -> str:
    """A backend or profile name: ``[A-Za-z0-9._-]+``, not ``.`` or ``..``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise BundleError(f"{where} {_short(name)} must match [A-Za-z0-9._-]+ and not be '.' or '..'")
    return name


def check_relpath(rel, where: str = "file") -> str:
    """``rel`` if it is a safe bundle-relative path (see the module docstring)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or rel.startswith("/"):
        raise BundleError(f"{where} {_short(rel)} is not a relative path inside the bundle")
    parts = rel.split("/")
    if len(parts) > MAX_DEPTH or not all(_PART_RE.fullmatch(p) for p in parts):
        raise BundleError(f"{where} {_short(rel)} is not a plain path inside the bundle (expected at most "
                          f"{MAX_DEPTH} parts of letters, digits, '.', '_', '-'; no '..')")
    return rel


def _refuse_links(root: Path, rel: str, where: str) -> Path:
    """root/rel, after checking that no existing part of it below ``root`` is a link."""
    path = root
    for part in rel.split("/"):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return root / rel            # the rest does not exist yet (a file about to be written)
        except OSError as e:
            raise BundleError(f"{where} {rel}: cannot be checked ({e.strerror})") from None
        if stat.S_ISLNK(st.st_mode):
            raise BundleError(f"bundle {root}: {path.relative_to(root)} is a symbolic link; a bundle may not "
                              f"contain links (they can point outside it)")
    return path


def bundle_root(root: Union[str, Path]) -> Path:
    """The bundle folder, resolved (the folder itself may be reached through a link the user
    made; what is inside it may not)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root}")
    return Path(os.path.realpath(root))


def inside(root: Union[str, Path], rel, where: str = "file", must_exist: bool = True) -> Path:
    """The path of bundle-relative ``rel`` under ``root``, or a BundleError: ``rel`` must be
    a safe relative path, no part of it a link, and (``must_exist``) a regular file."""
    root = Path(root)
    check_relpath(rel, where)
    path = _refuse_links(root, rel, where)
    real = os.path.realpath(path)
    base = os.path.realpath(root)
    if not (real == base or real.startswith(base.rstrip("/") + "/")):
        raise BundleError(f"{where} {rel} resolves outside the bundle {root}")
    if must_exist:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BundleError(f"bundle {root}: file {rel} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"bundle {root}: {rel} is not a regular file")
    return path


def check_external_data(root: Union[str, Path], graph_rel: str) -> None:
    """Refuse graph ``graph_rel`` unless every tensor stored outside it is a plain file in its
    own folder inside the bundle (ONNX resolves ``location`` against the graph's folder, and
    ONNX Runtime would otherwise read ``../../anything``)."""
    root = Path(root)
    path = inside(root, graph_rel, "graph")
    folder = str(Path(graph_rel).parent)
    try:
        locations = external_locations(path.read_bytes())
    except ValueError:
        raise BundleError(f"bundle {root}: graph {graph_rel} is not a readable ONNX model") from None
    for loc in sorted(locations):
        if "/" in loc or not _PART_RE.fullmatch(loc):
            raise BundleError(f"bundle {root}: graph {graph_rel} stores tensors at {_short(loc)}, outside the "
                              f"graph's folder; refused")
        inside(root, f"{folder}/{loc}", f"external data of {graph_rel}")


# -- the ONNX wire format, just enough to find external data -----------------------------------
# Read without the onnx package (the runtime's base install has none) and without recursion
# (a hostile graph can nest subgraphs arbitrarily deep). Field numbers from onnx.proto:
# ModelProto.graph 7, .functions 25; FunctionProto.node 7; GraphProto.node 1, .initializer 5,
# .sparse_initializer 15; NodeProto.attribute 5; AttributeProto.t 5, .g 6, .tensors 10,
# .graphs 11, .sparse_tensor 22, .sparse_tensors 23; SparseTensorProto.values 1, .indices 2;
# TensorProto.external_data 13 (StringStringEntryProto key 1, value 2), .data_location 14.
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of one message: an int, or the bytes of a
    length-delimited field."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(buf):
            raise ValueError("truncated field")
        yield num, wire, value


def external_locations(model_bytes: bytes) -> set[str]:
    """The ``location`` of every tensor a serialized ONNX model stores outside itself (a
    ValueError when the bytes are not a well-formed protobuf message)."""
    out: set[str] = set()
    stack = [("model", model_bytes)]
    while stack:
        kind, buf = stack.pop()
        if kind == "tensor":
            external, location = False, None
            for num, wire, value in _fields(buf):
                if num == 14 and wire == 0:
                    external = value == 1
                elif num == 13 and wire == 2:
                    entry = {n: v for n, w, v in _fields(value) if w == 2}
                    if entry.get(1) == b"location":
                        location = entry.get(2, b"").decode("utf-8", "replace")
            if external:
                out.add(location if location is not None else "")
            continue
        children = _CHILDREN[kind]
        for num, wire, value in _fields(buf):
            if wire == 2 and num in children:
                stack.append((children[num], value))
    return out
