"""Bundle layout, manifest reading and integrity checks (docs/INTERFACES.md, schema 2).

A bundle is the output of ``dymu-rt build``: ``manifest.json`` (written last,
atomically), one ONNX graph per topology under ``graphs/`` whose weights live once, in
the shared ``graphs/weights.bin`` (ONNX external data, :mod:`dymu_rt.compile.weights`),
and the controller under ``controller/``. Every file the manifest names carries its
sha256; :func:`verify_bundle` checks them all and is what the runtime calls before
trusting a bundle.

Schema 2 (this version) differs from schema 1 only in the graphs: exported at the anchor
(BN deltas 0) with external weights, and the manifest's ``weights`` section; schema 1
graphs were self-contained and folded at their topology's first grid point
(``exported_at``). Both are read; a grid point's weights are bound by name either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from dymu_rt.errors import BundleError
from dymu_rt.utils.io import sha256_file

SCHEMA_VERSION = 2
#: Schema versions this dymu-rt reads (1: self-contained graphs, no ``weights`` section).
READABLE_SCHEMAS = (1, 2)
KIND = "dymu-rt-bundle"
MANIFEST = "manifest.json"
JOURNAL = ".build-journal.json"
GRAPHS_DIR = "graphs"
CONTROLLER_DIR = "controller"
EDGE_HYPERNET_FILE = f"{CONTROLLER_DIR}/edge_hypernet.onnx"
WEIGHT_HYPERNET_FILE = f"{CONTROLLER_DIR}/weight_hypernet.onnx"
FOLD_PARAMS_FILE = f"{CONTROLLER_DIR}/fold_params.safetensors"
#: The shared tensor file every graph references (next to the graphs: ONNX resolves
#: external data relative to the graph's folder).
WEIGHTS_FILE = f"{GRAPHS_DIR}/weights.bin"

REQUIRED_KEYS = ("schema_version", "kind", "producer", "preset", "tasks", "preprocessing", "grid",
                 "points", "topologies", "controller", "bn_layout", "bn_eps", "topology_salt")


def graph_file(topology: str) -> str:
    """Bundle-relative path of a topology's ONNX graph."""
    return f"{GRAPHS_DIR}/{topology}.onnx"


def is_bundle(path: str | Path) -> bool:
    """True when ``path`` is a directory holding a bundle manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of bundle ``path``, structurally checked (not the file hashes)."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root}")
    if not mpath.is_file():
        raise BundleError(f"{root} is not a dymu-rt bundle (no {MANIFEST}); build one with `dymu-rt build`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(f"{mpath} is not a dymu-rt bundle manifest (kind != {KIND!r})")
    version = manifest.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise BundleError(f"{mpath} has schema_version {version!r}; this dymu-rt reads "
                          f"{', '.join(map(str, READABLE_SCHEMAS))} (rebuild the bundle with this version)")
    missing = [k for k in REQUIRED_KEYS + (("weights",) if version >= 2 else ()) if k not in manifest]
    if missing:
        raise BundleError(f"{mpath} lacks keys {missing}")
    return manifest


def manifest_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Every file the manifest names (bundle-relative path -> sha256)."""
    files = {t["file"]: t["sha256"] for t in manifest["topologies"].values()}
    weights = manifest.get("weights")
    if isinstance(weights, dict) and "file" in weights:
        files[weights["file"]] = weights["sha256"]
    for entry in manifest["controller"].values():
        if isinstance(entry, dict) and "file" in entry:
            files[entry["file"]] = entry["sha256"]
    for backend in manifest.get("engines", {}).values():
        for prof in backend.values():
            for entry in prof.get("files", {}).values():
                files[entry["file"]] = entry["sha256"]
    return files


def check_file(root: Path, rel: str, sha256: Optional[str]) -> None:
    """Raise BundleError unless ``root/rel`` exists (and matches ``sha256`` when given)."""
    path = root / rel
    if not path.is_file():
        raise BundleError(f"bundle {root}: file {rel} is missing")
    if sha256 is not None and sha256_file(path) != sha256:
        raise BundleError(f"bundle {root}: file {rel} is corrupt (sha256 differs from the manifest); "
                          "rebuild with `dymu-rt build`")


def verify_bundle(path: str | Path, check_hashes: bool = True) -> dict[str, Any]:
    """Check a bundle: manifest structure, every named file present and (by default)
    matching its sha256 (the shared weight file included), every point mapped to a known
    topology. Returns the manifest."""
    root = Path(path)
    manifest = read_manifest(root)
    weights = manifest.get("weights")
    if weights is not None and (not isinstance(weights, dict) or
                                str(Path(weights.get("file", "")).parent) != GRAPHS_DIR):
        raise BundleError(f"bundle {root}: manifest 'weights' must name a file in {GRAPHS_DIR}/ "
                          "(graphs resolve their external data there)")
    for rel, digest in sorted(manifest_files(manifest).items()):
        check_file(root, rel, digest if check_hashes else None)
    topologies = manifest["topologies"]
    for i, p in enumerate(manifest["points"]):
        if p.get("topology") not in topologies:
            raise BundleError(f"bundle {root}: point {i} maps to unknown topology {p.get('topology')!r}")
    return manifest


def bundle_bytes(path: str | Path) -> int:
    """Total size of the files under a bundle directory (build journal excluded)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name != JOURNAL)
