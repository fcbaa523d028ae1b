"""Every path a bundle names stays inside the bundle: strict names, no links, no escapes.

A bundle is a file someone hands you. Its manifest names topology ids (which become file
and folder names), files, and its ONNX graphs name external-data files; any of them could
be ``../../somewhere`` or ``/etc/passwd``, and any file or folder in it could be a
symbolic link to elsewhere. The rules, applied before anything is opened or written:

* a topology id is 8-64 lowercase hex digits (what :func:`dymu_rt.models.tree.topology_id`
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

from dymu_rt.errors import BundleError

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
    import onnx
    from google.protobuf.message import DecodeError

    root = Path(root)
    path = inside(root, graph_rel, "graph")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise BundleError(f"bundle {root}: graph {graph_rel} is not a readable ONNX model ({type(e).__name__})") from None
    folder = str(Path(graph_rel).parent)
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if not isinstance(loc, str) or "/" in loc or not _PART_RE.fullmatch(loc):
            raise BundleError(f"bundle {root}: graph {graph_rel} stores tensor {_short(tensor.name, 60)} at "
                              f"{_short(loc)}, outside the graph's folder; refused")
        inside(root, f"{folder}/{loc}", f"external data of {graph_rel}")


def _tensors(graph):
    """Every tensor of a graph: initializers, sparse initializers, node attributes, subgraphs."""
    yield from graph.initializer
    for sp in graph.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)
