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
import os
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


#: Largest manifest read (the paper-scale grids' manifests are a few MB).
MAX_MANIFEST_BYTES = 64 * 2**20


def load_manifest_json(path: str | Path) -> Any:
    """The parsed manifest.json of bundle ``path`` (no schema check): the file must be a
    regular file (not a link), at most MAX_MANIFEST_BYTES, valid UTF-8 JSON."""
    from dymu_rt.bundle.paths import bundle_root, inside

    root = bundle_root(path)
    if not os.path.lexists(root / MANIFEST):
        raise BundleError(f"{path} is not a dymu-rt bundle (no {MANIFEST}); build one with `dymu-rt build`")
    mpath = inside(root, MANIFEST, "manifest")
    size = mpath.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath} is {size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}")
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath} is not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{mpath} is nested too deeply to be a dymu-rt manifest") from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of bundle ``path``: schema-checked (:mod:`dymu_rt.bundle.schema`: types,
    names, paths, nesting, cross-section agreement) and checked against its checksum
    (:mod:`dymu_rt.bundle.checksum`); not the files' hashes (:func:`verify_bundle`)."""
    from dymu_rt.bundle.checksum import verify_checksum
    from dymu_rt.bundle.schema import validate_manifest

    root = Path(path)
    mpath = root / MANIFEST
    manifest = load_manifest_json(root)
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(f"{mpath} is not a dymu-rt bundle manifest (kind != {KIND!r})")
    version = manifest.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMAS:
        raise BundleError(f"{mpath} has schema_version {version!r}; this dymu-rt reads "
                          f"{', '.join(map(str, READABLE_SCHEMAS))} (rebuild the bundle with this version)")
    missing = [k for k in REQUIRED_KEYS + (("weights",) if version >= 2 else ()) if k not in manifest]
    if missing:
        raise BundleError(f"{mpath} lacks keys {missing}")
    validate_manifest(manifest, GRAPHS_DIR, WEIGHTS_FILE,
                      {"edge_hypernet": EDGE_HYPERNET_FILE, "weight_hypernet": WEIGHT_HYPERNET_FILE,
                       "fold_params": FOLD_PARAMS_FILE})
    try:
        verify_checksum(root, manifest)
    except BundleError:
        # A writer may have replaced manifest and checksum between our two reads: look
        # again while no writer can run.
        from dymu_rt.bundle.lock import bundle_lock

        with bundle_lock(root):
            manifest = load_manifest_json(root)
            validate_manifest(manifest, GRAPHS_DIR, WEIGHTS_FILE,
                              {"edge_hypernet": EDGE_HYPERNET_FILE, "weight_hypernet": WEIGHT_HYPERNET_FILE,
                               "fold_params": FOLD_PARAMS_FILE})
            verify_checksum(root, manifest)
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
    """Raise BundleError unless ``root/rel`` is a regular file inside the bundle, reached
    through no link (:func:`dymu_rt.bundle.paths.inside`), and matches ``sha256`` when given."""
    from dymu_rt.bundle.paths import inside

    path = inside(Path(root), rel)
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
    for folder in (GRAPHS_DIR, CONTROLLER_DIR, "engines", "calibration"):
        if (root / folder).is_symlink():
            raise BundleError(f"bundle {root}: {folder} is a symbolic link; a bundle may not contain links "
                              f"(they can point outside it)")
    for rel, digest in sorted(manifest_files(manifest).items()):
        check_file(root, rel, digest if check_hashes else None)
    from dymu_rt.bundle.paths import check_external_data

    # Graphs name their external data themselves: no graph may send a reader outside.
    for t in manifest["topologies"].values():
        check_external_data(root, t["file"])
    for entry in manifest["controller"].values():
        if isinstance(entry, dict) and str(entry.get("file", "")).endswith(".onnx"):
            check_external_data(root, entry["file"])
    topologies = manifest["topologies"]
    for i, p in enumerate(manifest["points"]):
        if p.get("topology") not in topologies:
            raise BundleError(f"bundle {root}: point {i} maps to unknown topology {p.get('topology')!r}")
    return manifest


def bundle_bytes(path: str | Path) -> int:
    """Total size of the files under a bundle directory (build journal excluded)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name != JOURNAL)
