"""A checksum of the manifest's content, kept beside it, so an edit to it is detected.

Every file a manifest names carries its sha256, but the manifest itself did not: an edited
``bn_eps``, BN-layout offset, preprocessing scale or ``params`` silently changed outputs or
reported statistics. ``manifest.sha256.json`` (next to ``manifest.json``) holds the sha256 of
the manifest's *canonical* content (``json.dumps(m, sort_keys=True, separators=(",", ":"))``,
so re-indenting the file is not an edit). Every writer of the manifest rewrites it; every
reader verifies it (:func:`verify_checksum`), and so does ``inspect --verify``.

Crash safety without a window: a writer first lists the old *and* the new digest in the
checksum file, then renames the new manifest into place, then lists only the new digest.
A writer killed anywhere in between leaves a manifest whose digest is listed.

This detects careless and naive edits, not an attacker who recomputes the checksum (that
needs a signature, which a self-built bundle has no key for). A bundle written before the
checksum existed has no checksum file and is read as before; ``inspect --verify`` says so.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from dymu_rt.errors import BundleError
from dymu_rt.utils.io import atomic_write_json, atomic_write_text

CHECKSUM_FILE = "manifest.sha256.json"
MANIFEST = "manifest.json"
_FORMAT = "sha256 of json.dumps(manifest, sort_keys=True, separators=(',', ':'), ensure_ascii=True)"


def canonical_digest(manifest: Any) -> str:
    """sha256 (hex) of the manifest's canonical JSON form."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_digests(root: str | Path) -> Optional[list[str]]:
    """The digests listed beside the manifest, or None when the bundle has no checksum file."""
    path = Path(root) / CHECKSUM_FILE
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
        raise BundleError(f"bundle {root}: {CHECKSUM_FILE} is not a small regular file")
    try:
        data = json.loads(path.read_text(encoding="ascii"))
        digests = data["canonical_sha256"]
        if not isinstance(digests, list) or not all(isinstance(d, str) and len(d) == 64 for d in digests):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise BundleError(f"bundle {root}: {CHECKSUM_FILE} is damaged; rebuild the bundle with `dymu-rt build`") from None
    return digests


def verify_checksum(root: str | Path, manifest: Any) -> bool:
    """True when the manifest matches its checksum; False when the bundle has none (older
    bundles); a BundleError when it does not match (the manifest was edited)."""
    digests = read_digests(root)
    if digests is None:
        return False
    if canonical_digest(manifest) not in digests:
        raise BundleError(f"bundle {root}: manifest.json was edited since it was written (its content no longer "
                          f"matches {CHECKSUM_FILE}); rebuild the bundle with `dymu-rt build`, or restore the "
                          f"original manifest")
    return True


def _write_digests(root: Path, digests: list[str]) -> None:
    atomic_write_json(root / CHECKSUM_FILE, {"canonical_sha256": digests, "format": _FORMAT})


def write_with_checksum(root: str | Path, manifest: dict) -> None:
    """Write ``manifest`` and its checksum atomically, in the crash-safe order above (the
    digests listed before stay valid until the new manifest is in place)."""
    root = Path(root)
    new = canonical_digest(manifest)
    try:
        old = [d for d in (read_digests(root) or []) if d != new]
    except BundleError:
        old = []
    _write_digests(root, [new] + old[:4])
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if old:
        _write_digests(root, [new])


def write_checksum(root: str | Path) -> None:
    """(Re)write the checksum of the manifest as it is on disk (tests, migration)."""
    root = Path(root)
    _write_digests(root, [canonical_digest(json.loads((root / MANIFEST).read_text(encoding="utf-8")))])
