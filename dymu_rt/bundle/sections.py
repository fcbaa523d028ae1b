"""The manifest's run-time sections: ``engines``, ``latency`` and ``int8`` (docs/INTERFACES.md).

* ``engines[backend][profile]``: compiled artifacts (ORT optimized graphs, TensorRT
  engines) with the device facts they are tied to; :func:`check_engines` refuses a record
  made for another device, :func:`engines_dir` is where they live.
* ``latency[profile][topology]``: ``{p50_ms, p90_ms, p99_ms, batch, iters}`` measured by
  ``dymu-rt profile``.
* ``int8``: per topology, the tensor ranges ``dymu-rt calibrate`` wrote (:func:`int8_ranges`
  resolves one, :func:`cache_key` names a calibration result).

:func:`open_manifest` is how the runtime opens a bundle (hashes checked);
:func:`update_manifest` re-reads, edits and rewrites the manifest atomically under a
cross-process file lock (validated again, through :func:`dymu_rt.bundle.manifest.write_manifest`),
so concurrent writers in any number of processes never lose each other's entries.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from dymu_rt.bundle import layout as L
from dymu_rt.bundle.lock import bundle_lock
from dymu_rt.bundle.manifest import MANIFEST, Manifest, read_manifest, write_manifest
from dymu_rt.core.errors import BundleError, ValidationError

_WRITE_LOCK = threading.Lock()
# Facts that are informational only; every other recorded fact must match.
_INFORMATIONAL = {"cpu", "files", "binding", "profile"}
#: backend and profile names (they become folder names under engines/)
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
INT8_KEY = "int8"
CALIBRATION_DIR = "calibration"


def open_manifest(path: Path) -> Manifest:
    """The manifest of bundle ``path``, verified (schema, files, hashes); BundleError with a fix."""
    return L.verify_bundle(path)


# -- engines --------------------------------------------------------------------------------------

def engines_dir(backend: str, profile: str) -> str:
    """Bundle-relative folder of a backend's compiled artifacts for a profile (the names are
    checked again here: they become a path that ``--rebuild-engines`` deletes)."""
    for what, value in (("backend", backend), ("profile name", profile)):
        if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
            raise ValidationError(f"{what} {value!r} must match ^[A-Za-z0-9._-]+$ and not be '.' or '..'")
    return f"{L.ENGINES_DIR}/{backend}/{profile}"


def engine_record(manifest: Manifest, backend: str, profile: str) -> Optional[dict]:
    """The ``engines[backend][profile]`` record, or None."""
    rec = manifest.engines.get(backend, {}).get(profile)
    return None if rec is None else dict(rec)


def check_engines(root: Path, manifest: Manifest, backend, profile: str) -> Optional[dict]:
    """The engine record for (backend, profile), or None; refuses one made for another device.

    Compares every fact the backend reports (``backend.device_facts()``) except
    informational ones (CPU model name) with the recorded ones.
    """
    rec = engine_record(manifest, backend.name, profile)
    if rec is None:
        return None
    current = backend.device_facts()
    diffs = [f"{k}: built for {rec.get(k)!r}, this machine has {v!r}" for k, v in current.items()
             if k not in _INFORMATIONAL and rec.get(k) != v]
    if diffs:
        raise BundleError(
            f"bundle {root}: {backend.name} engines for profile '{profile}' were built for another "
            f"device or version ({'; '.join(diffs)}); rebuild them with `dymu-rt profile --bundle {root} "
            f"--profile {profile} --rebuild-engines` (or delete {root / engines_dir(backend.name, profile)})")
    return rec


def record_engine(doc: dict, backend: str, profile: str, facts: dict, topology: str, entry: dict,
                  binding: Optional[str] = None) -> None:
    """Edit (for :func:`update_manifest`): record one compiled engine and the facts it is tied to."""
    rec = doc.setdefault("engines", {}).setdefault(backend, {}).setdefault(profile, {})
    rec.update(facts)
    rec["profile"] = profile
    if binding is not None:
        rec["binding"] = binding
    rec.setdefault("files", {})[topology] = entry


def drop_engines(doc: dict, backend: str, profile: str) -> None:
    """Edit (for :func:`update_manifest`): forget the engines of (backend, profile)."""
    doc.get("engines", {}).get(backend, {}).pop(profile, None)


# -- latency ----------------------------------------------------------------------------------------

def latency_table(manifest: Manifest, profile: str) -> Optional[dict[str, dict]]:
    """Topology id -> measured latency row on ``profile``, or None when never profiled."""
    table = manifest.latency.get(profile)
    return None if table is None else {k: dict(v) for k, v in table.items()}


def set_latency(doc: dict, profile: str, table: dict[str, dict]) -> None:
    """Edit (for :func:`update_manifest`): store the latency table of ``profile``."""
    doc.setdefault("latency", {})[profile] = table


# -- int8 -------------------------------------------------------------------------------------------

def cache_key(graph_sha256: str, set_digest: str, method: str, weights_sha256: str = "",
              fold_sha256: str = "") -> str:
    """Folder name of one calibration result, named by every input of it: the graph, the
    weight file its tensors live in and the fold parameters the raw conv weights and anchor
    BN feeds are derived from (a key without them would hand back ranges computed from
    corrupt weights after the weights are repaired), the calibration set and the method."""
    return hashlib.sha256(f"{graph_sha256}\n{weights_sha256}\n{fold_sha256}\n{set_digest}\n{method}"
                          .encode()).hexdigest()[:16]


def weights_sha256(manifest: Manifest) -> str:
    """The checksum of the bundle's shared weight file ("" for schema-1 bundles, whose
    graphs hold their own weights)."""
    w = manifest.weights
    return w["sha256"] if isinstance(w, Mapping) else ""


def fold_params_sha256(manifest: Manifest) -> str:
    """The checksum of the controller's fold parameters ("" when the bundle has none)."""
    entry = (manifest.controller or {}).get("fold_params")
    return entry.sha256 if entry is not None else ""


def set_int8(doc: dict, record: dict) -> None:
    """Edit (for :func:`update_manifest`): store the ``int8`` section."""
    doc[INT8_KEY] = record


def int8_ranges(bundle: str | Path, manifest: Manifest, topology: str, check: bool = False) -> Path:
    """The calibrated tensor ranges recorded for ``topology`` (BundleError with a hint when absent).

    The Q/DQ graphs are derived from these and the bundle's weights where they are used
    (schema 3 stores no Q/DQ graph; :mod:`dymu_rt.compile.calibrate`). ``check``: also
    refuse ranges whose sha256 differs from the record, or that were calibrated for another
    version of the topology's FP32 graph (the bundle was rebuilt since).
    """
    if L.is_shipped_bundle(bundle):
        fix = (f"the shipped bundle is read-only: copy it (cp -r {bundle} my-bundle) and run "
               "`dymu-rt calibrate my-bundle --synth 64` (or --images DIR), then use --bundle my-bundle")
    else:
        fix = f"run `dymu-rt calibrate {bundle} --synth 64` (or --images DIR) first"
    cal = manifest.int8 or {}
    rec = cal.get("files", {}).get(topology)
    if rec is None or "ranges" not in rec:
        raise BundleError(f"bundle {bundle}: no INT8 calibration for topology {topology} (not calibrated); {fix}")
    entry = rec["ranges"]
    if check:
        graph_sha = manifest.topologies[topology].sha256
        if rec.get("key") != cache_key(graph_sha, cal.get("calibration", {}).get("digest", ""), cal.get("method", ""),
                                       weights_sha256(manifest), fold_params_sha256(manifest)):
            raise BundleError(f"bundle {bundle}: the INT8 calibration of topology {topology} was made for another "
                              f"version of its FP32 graph (the bundle was rebuilt); {fix} again")
        L.check_file(Path(bundle), entry["file"], entry["sha256"])
    return Path(bundle) / entry["file"]


def int8_sha256(manifest: Manifest, topology: str) -> Optional[str]:
    """The recorded sha256 of ``topology``'s calibrated ranges (what its INT8 graphs derive from), or None."""
    return (manifest.int8 or {}).get("files", {}).get(topology, {}).get("ranges", {}).get("sha256")


# -- writing ----------------------------------------------------------------------------------------

def update_manifest(root: Path, edit: Callable[[dict], Any]) -> Manifest:
    """Apply ``edit`` to the current manifest document and rewrite it (and its checksum)
    atomically, under the bundle's cross-process writer lock
    (:func:`dymu_rt.bundle.lock.bundle_lock`: flock on ``BUNDLE/.lock``). The manifest is
    re-read and validated under the lock, so concurrent writers in any number of processes
    never lose each other's entries. Returns the new typed manifest."""
    with _WRITE_LOCK, bundle_lock(root):
        doc = read_manifest(root).to_dict()
        edit(doc)
        return write_manifest(root, doc)
