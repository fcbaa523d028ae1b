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
needs a signature, which a self-built bundle has no key for).

A bundle without a checksum file is **refused** (deleting the file was the way to launder an
edit): a user with a bundle written before checksums existed opts in with
``--allow-unverified`` (:func:`allow_unverified`), and every use prints a warning. No writer
creates a checksum over content it did not write: :func:`write_with_checksum` refuses a
bundle whose current manifest is not verified (``update_manifest`` reads under the lock,
verified, then writes both), so ``profile``/``calibrate``/``run`` never bless an edit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from dymu_rt.core.errors import BundleError
from dymu_rt.core.io import atomic_write_json, atomic_write_text

CHECKSUM_FILE = "manifest.sha256.json"
MANIFEST = "manifest.json"
_FORMAT = "sha256 of json.dumps(manifest, sort_keys=True, separators=(',', ':'), ensure_ascii=True)"


_ALLOW = {"on": False}
_WARNED: set[str] = set()
ALLOW_ENV = "DYMU_RT_ALLOW_UNVERIFIED"


def allow_unverified(on: bool = True) -> None:
    """Let bundles without a manifest checksum be read (``--allow-unverified``), with a warning."""
    _ALLOW["on"] = bool(on)


def unverified_allowed() -> bool:
    return _ALLOW["on"] or os.environ.get(ALLOW_ENV) == "1"


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
        if not unverified_allowed():
            raise BundleError(f"bundle {root} has no {CHECKSUM_FILE}: its manifest cannot be verified (an edited "
                              "manifest is refused); rebuild it with `dymu-rt build`, or pass --allow-unverified "
                              "to use an old bundle anyway")
        key = os.path.realpath(root)
        if key not in _WARNED:
            _WARNED.add(key)
            print(f"warning: bundle {root} has no {CHECKSUM_FILE}; its manifest is used UNVERIFIED "
                  "(--allow-unverified)", file=sys.stderr)
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
    if os.path.lexists(root / MANIFEST):
        # Never seal content this writer did not write: the manifest on disk must be verified
        # (a build replacing a folder's contents stages a fresh folder and writes no old one).
        current = None
        try:
            current = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (ValueError, OSError, RecursionError):
            pass
        digests = read_digests(root)
        if digests is None or current is None or canonical_digest(current) not in digests:
            raise BundleError(f"bundle {root}: its manifest is not verified by {CHECKSUM_FILE}; refusing to write "
                              "a checksum over content dymu-rt did not write (rebuild the bundle with `dymu-rt build`)")
        old = [d for d in digests if d != new]
    else:
        old = []
    _write_digests(root, [new] + old[:4])
    atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if old:
        _write_digests(root, [new])


def write_checksum(root: str | Path) -> None:
    """(Re)write the checksum of the manifest as it is on disk (tests, migration)."""
    root = Path(root)
    _write_digests(root, [canonical_digest(json.loads((root / MANIFEST).read_text(encoding="utf-8")))])
