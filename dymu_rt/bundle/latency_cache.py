"""Latency tables of bundles that cannot be written to, kept in a per-user cache.

``dymu-rt profile`` stores a bundle's latency table in its manifest. The shipped default
bundle is package data (and a bundle on a read-only mount cannot be written either), so
its table goes to ``$XDG_CACHE_HOME/dymu-rt/latency/`` (``~/.cache/dymu-rt/latency/`` when
the variable is unset) instead, one JSON file per (bundle, profile, library versions):

* the bundle is named by the sha256 of its manifest's canonical content less the sections
  the runtime writes (``latency``, ``engines``): the manifest lists every file's sha256, so
  this names the model's exact content, wherever the folder lies;
* the profile by its name;
* the versions of the libraries that time it (dymu-rt, ONNX Runtime, numpy, Python, and
  TensorRT where installed): a table timed under other versions is not reused.

:func:`with_cached_latency` adds the cached tables to a manifest (a table stored in the
manifest itself wins), so ``run --latency-budget`` and ``inspect`` read them like any other.
A cache file that cannot be read or does not look like a table is treated as absent (the
next ``profile`` replaces it); it is never executed or unpickled, only parsed as JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping, Optional

from dymu_rt import __version__
from dymu_rt.bundle.checksum import canonical_digest
from dymu_rt.bundle.manifest import Manifest
from dymu_rt.core.io import atomic_write_json

#: manifest sections the runtime writes; left out of the bundle's cache key
RUNTIME_SECTIONS = ("latency", "engines")
#: largest cache file read (a table of a paper-scale grid is well under 1 MiB)
MAX_CACHE_BYTES = 16 * 2**20


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/dymu-rt`` (``~/.cache/dymu-rt`` when unset or not absolute)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "dymu-rt"


def library_versions() -> dict[str, str]:
    """Versions of what a latency row is timed with (part of the cache key)."""
    import numpy as np
    import onnxruntime

    versions = {"dymu_rt": __version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    try:
        import tensorrt  # noqa: F401  (optional)

        versions["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return versions


def bundle_digest(manifest: Manifest) -> str:
    """sha256 of the manifest's canonical content, less the sections the runtime writes."""
    doc = {k: v for k, v in manifest.data.items() if k not in RUNTIME_SECTIONS}
    return canonical_digest(doc)


def cache_file(manifest: Manifest, profile: str, versions: Optional[Mapping[str, str]] = None) -> Path:
    """Where the latency table of ``manifest``'s bundle on ``profile`` is cached."""
    versions = dict(versions or library_versions())
    key = hashlib.sha256(json.dumps({"bundle": bundle_digest(manifest), "profile": profile,
                                     "versions": versions}, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "latency" / f"{key}.json"


def store(manifest: Manifest, profile: str, table: Mapping[str, Mapping[str, Any]],
          versions: Optional[Mapping[str, str]] = None) -> Path:
    """Write ``table`` (topology id -> latency row) to the cache; returns the file."""
    versions = dict(versions or library_versions())
    path = cache_file(manifest, profile, versions)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"bundle_sha256": bundle_digest(manifest), "profile": profile,
                             "versions": versions, "table": {k: dict(v) for k, v in table.items()}})
    return path


def load(manifest: Manifest, profile: str,
         versions: Optional[Mapping[str, str]] = None) -> Optional[dict[str, dict]]:
    """The cached table of ``manifest``'s bundle on ``profile``, or None (none, or unusable)."""
    path = cache_file(manifest, profile, versions)
    try:
        if not path.is_file() or path.stat().st_size > MAX_CACHE_BYTES:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        table = doc["table"]
        if doc.get("bundle_sha256") != bundle_digest(manifest) or doc.get("profile") != profile:
            return None
        ok = isinstance(table, dict) and table and all(
            tid in manifest.topologies and isinstance(row, dict)
            and isinstance(row.get("p50_ms"), (int, float)) and not isinstance(row.get("p50_ms"), bool)
            for tid, row in table.items())
        return {k: dict(v) for k, v in table.items()} if ok else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def cached_tables(manifest: Manifest, versions: Optional[Mapping[str, str]] = None) -> dict[str, dict]:
    """Profile name -> {"file": cache file, "table": ...} for every profile whose table of
    ``manifest``'s bundle is cached under the current library versions."""
    versions = dict(versions or library_versions())
    folder = cache_root() / "latency"
    out: dict[str, dict] = {}
    digest = bundle_digest(manifest)
    try:
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    except OSError:
        return out
    for f in files[:10000]:
        try:
            if f.stat().st_size > MAX_CACHE_BYTES:
                continue
            doc = json.loads(f.read_text(encoding="utf-8"))
            profile = doc["profile"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue
        if doc.get("bundle_sha256") != digest or not isinstance(profile, str) or profile in out:
            continue
        table = load(manifest, profile, versions)       # checks the key (versions) and the rows
        if table is not None and cache_file(manifest, profile, versions) == f:
            out[profile] = {"file": f, "table": table}
    return out


def with_cached_latency(manifest: Manifest, versions: Optional[Mapping[str, str]] = None) -> Manifest:
    """``manifest`` with every cached latency table of its bundle added (the manifest's own
    tables win); the same object when there is nothing to add."""
    extra = {p: v["table"] for p, v in cached_tables(manifest, versions).items() if p not in manifest.latency}
    if not extra:
        return manifest
    return dataclasses.replace(manifest, latency={**manifest.latency, **extra})
