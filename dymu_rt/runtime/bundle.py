"""Opening a bundle for inference: validation, and the run-time sections it records.

:func:`open_manifest` refuses a bundle newer than this dymu-rt understands, then runs the
compiler's :func:`dymu_rt.compile.bundle.verify_bundle` (kind, schema, every named file
present with its sha256, points -> known topologies) and checks that engines recorded for
the requested backend/profile were built for this device (:func:`check_engines`).

The runtime writes two sections back (docs/INTERFACES.md): ``latency[profile]`` (by
``dymu-rt profile``) and ``engines[backend][profile]`` (cached optimized graphs, with the
device facts they are tied to). :func:`update_manifest` re-reads, edits and rewrites the
manifest atomically under a process-wide lock, so concurrent writers in one process never
lose each other's entries.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from dymu_rt.compile import bundle as B
from dymu_rt.errors import BundleError, ValidationError
from dymu_rt.utils.io import atomic_write_json

_WRITE_LOCK = threading.Lock()
# Facts that are informational only; every other recorded fact must match.
_INFORMATIONAL = {"cpu", "files", "binding", "profile"}


def open_manifest(path: Path) -> dict[str, Any]:
    """Validated manifest of bundle ``path`` (raises BundleError with a fix hint)."""
    mpath = Path(path) / B.MANIFEST
    if mpath.is_file():
        try:
            version = json.loads(mpath.read_text(encoding="utf-8")).get("schema_version")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            version = None
        if isinstance(version, int) and version > B.SCHEMA_VERSION:
            raise BundleError(f"bundle {path} has schema_version {version}, newer than this dymu-rt "
                              f"understands ({B.SCHEMA_VERSION}); upgrade dymu-rt or rebuild the bundle")
    return B.verify_bundle(path)


def static_section(path) -> Optional[dict]:
    """The ``static`` section of bundle ``path`` (an AdaShare/DAG bundle of one fixed
    architecture), or None for a DYMU bundle or anything unreadable (full validation is
    :func:`open_manifest`'s)."""
    try:
        m = json.loads((Path(path) / B.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    static = m.get("static") if isinstance(m, dict) else None
    return static if isinstance(static, dict) else None


def engines_dir(backend: str, profile: str) -> str:
    """Bundle-relative folder of a backend's compiled artifacts for a profile (the profile
    name is checked again here: it becomes a path that ``--rebuild-engines`` deletes)."""
    from dymu_rt.backends.profile import NAME_RE

    for what, value in (("backend", backend), ("profile name", profile)):
        if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
            raise ValidationError(f"{what} {value!r} must match ^[A-Za-z0-9._-]+$ and not be '.' or '..'")
    return f"engines/{backend}/{profile}"


def check_engines(root: Path, manifest: Mapping, backend, profile: str) -> dict | None:
    """The engine record for (backend, profile), or None; refuses one made for another device.

    Compares every fact the backend reports (``backend.device_facts()``) except
    informational ones (CPU model name) with the recorded ones.
    """
    rec = manifest.get("engines", {}).get(backend.name, {}).get(profile)
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


def update_manifest(root: Path, edit: Callable[[dict], None]) -> dict:
    """Apply ``edit`` to the current manifest and rewrite it atomically; returns it."""
    with _WRITE_LOCK:
        mpath = Path(root) / B.MANIFEST
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        edit(manifest)
        atomic_write_json(mpath, manifest)
        return manifest
