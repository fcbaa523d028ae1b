"""Bundle layout on disk, integrity checks, the shipped default bundle (docs/INTERFACES.md, schema 2).

A bundle is the output of ``dymu-rt build``: ``manifest.json`` (written last,
atomically; typed by :mod:`dymu_rt.bundle.manifest`), one ONNX graph per topology under
``graphs/`` whose weights live once, in the shared ``graphs/weights.bin`` (ONNX external
data, :mod:`dymu_rt.compile.weights`), and the controller under ``controller/``. Every file
the manifest names carries its sha256; :func:`verify_bundle` checks them all and is what
the runtime calls before trusting a bundle.

Schema 2 (this version) differs from schema 1 only in the graphs: exported at the anchor
(BN deltas 0) with external weights, and the manifest's ``weights`` section; schema 1
graphs were self-contained and folded at their topology's first grid point
(``exported_at``). Both are read; a grid point's weights are bound by name either way.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Optional

from dymu_rt.bundle.manifest import (  # noqa: F401  (the layout's public names)
    KIND, MANIFEST, READABLE_SCHEMAS, SCHEMA_VERSION, Manifest, read_manifest,
)
from dymu_rt.bundle.content import check_content
from dymu_rt.bundle.paths import check_external_data, inside
from dymu_rt.core.errors import BundleError
from dymu_rt.core.io import sha256_file

JOURNAL = ".build-journal.json"
GRAPHS_DIR = "graphs"
CONTROLLER_DIR = "controller"
ENGINES_DIR = "engines"
EDGE_HYPERNET_FILE = f"{CONTROLLER_DIR}/edge_hypernet.onnx"
WEIGHT_HYPERNET_FILE = f"{CONTROLLER_DIR}/weight_hypernet.onnx"
FOLD_PARAMS_FILE = f"{CONTROLLER_DIR}/fold_params.safetensors"
#: The shared tensor file every graph references (next to the graphs: ONNX resolves
#: external data relative to the graph's folder).
WEIGHTS_FILE = f"{GRAPHS_DIR}/weights.bin"
#: Controller entries a runtime needs (``manifest.controller``).
CONTROLLER_FILES = ("edge_hypernet", "weight_hypernet", "fold_params")


def graph_file(topology: str) -> str:
    """Bundle-relative path of a topology's ONNX graph."""
    return f"{GRAPHS_DIR}/{topology}.onnx"


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a directory holding a bundle manifest."""
    return (Path(path) / MANIFEST).is_file()


def _shipped() -> Path:
    return Path(str(importlib.resources.files("dymu_rt.assets") / "default_bundle"))


def default_bundle_path() -> Path:
    """The bundle shipped as package data (``dymu_rt/assets/default_bundle``), or a BundleError."""
    path = _shipped()
    if not (path / MANIFEST).is_file():
        raise BundleError("no --bundle given and no default bundle is installed "
                          f"(expected {path}); pass --bundle DIR (build one with `dymu-rt build`)")
    return path


def is_shipped_bundle(path) -> bool:
    """True when ``path`` is the default bundle shipped inside the package (read-only)."""
    try:
        return Path(path).resolve() == _shipped().resolve()
    except OSError:
        return False


def static_section(path) -> Optional[dict]:
    """The ``static`` section of bundle ``path`` (an AdaShare/DAG bundle of one fixed
    architecture), or None for a DYMU bundle or anything unreadable; lets a command refuse
    options before opening the bundle. Read like every manifest (:func:`read_manifest`: no
    link, size and nesting limits, schema, checksum), so a hostile bundle is never parsed
    here either; the error itself is left to the full open (:func:`verify_bundle`)."""
    try:
        m = read_manifest(path)
    except (BundleError, OSError):
        return None
    return dict(m.static) if m.static else None


def check_file(root: Path, rel: str, sha256: Optional[str]) -> None:
    """Raise BundleError unless ``root/rel`` is a regular file inside the bundle, reached
    through no link (:func:`dymu_rt.bundle.paths.inside`), and matches ``sha256`` when given."""
    path = inside(Path(root), rel)
    if sha256 is not None and sha256_file(path) != sha256:
        raise BundleError(f"bundle {root}: file {rel} is corrupt (sha256 differs from the manifest); "
                          "rebuild with `dymu-rt build`")


def check_folders(root: Path) -> None:
    """Refuse a bundle whose own folders (graphs, controller, engines, calibration) are
    symbolic links: they can point anywhere, and writers would follow them."""
    for folder in (GRAPHS_DIR, CONTROLLER_DIR, ENGINES_DIR, "calibration"):
        if (Path(root) / folder).is_symlink():
            raise BundleError(f"bundle {root}: {folder} is a symbolic link; a bundle may not contain links "
                              f"(they can point outside it)")


def verify_bundle(path: str | Path, check_hashes: bool = True) -> Manifest:
    """Check a bundle: the manifest (schema, points -> known topologies), every named file
    present and (by default) matching its sha256 (the shared weight file included).
    Returns the typed manifest."""
    root = Path(path)
    manifest = read_manifest(root)
    weights = manifest.weights
    if weights is not None and str(Path(weights.get("file", "")).parent) != GRAPHS_DIR:
        raise BundleError(f"bundle {root}: manifest 'weights' must name a file in {GRAPHS_DIR}/ "
                          "(graphs resolve their external data there)")
    check_folders(root)
    for rel, digest in sorted(manifest.files().items()):
        check_file(root, rel, digest if check_hashes else None)
    # Graphs name their external data themselves: no graph may send a reader outside.
    for rel in sorted(manifest.files()):
        if rel.endswith(".onnx"):
            check_external_data(root, rel)
    # What the files contain (ops, inputs/outputs, sizes, NaN): bundle/content.py.
    check_content(root, manifest)
    return manifest


def bundle_bytes(path: str | Path) -> int:
    """Total size of the files under a bundle directory (build journal excluded)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name != JOURNAL)
