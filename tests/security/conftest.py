"""Fixtures of the security tests: an audit of what a command touched, and hostile inputs.

``audit`` installs one ``sys.addaudithook`` for the whole session (hooks cannot be removed)
that records, while a test's ``with audit(watch=..., allow=...)`` block runs, every file
Python opens under a watched folder and every write (open for writing, remove, rename,
mkdir, rmtree) outside the allowed folders. Files opened by C++ libraries (ONNX Runtime
reading external data) raise no audit event; for those, ``watched files`` get an access
time of 1 before the block and any later access time means something read them (the
filesystem updates atime when it is older than mtime, relatime's rule).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ACTIVE: list = []


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _hook(event: str, args) -> None:
    if not _ACTIVE:
        return
    rec = _ACTIVE[-1]
    paths, write = [], False
    if event == "open":
        path, mode, flags = args
        paths = [path]
        write = bool(mode and any(ch in str(mode) for ch in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
    elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "shutil.rmtree"):
        # A path relative to a directory descriptor (shutil.rmtree's walk) is audited by the
        # shutil.rmtree event of its root; resolving it against the cwd would be wrong.
        dir_fd = args[2] if event == "os.mkdir" and len(args) > 2 else args[1] if len(args) > 1 else None
        if event not in ("shutil.rmtree", "os.truncate") and isinstance(dir_fd, int):
            return
        paths, write = [args[0]], True
    elif event == "os.rename":
        paths, write = [args[0], args[1]], True
    elif event == "os.symlink":
        paths, write = [args[1]], True
    for p in paths:
        if isinstance(p, int) or p is None:
            continue
        try:
            raw = os.path.abspath(os.fsdecode(p))
        except (TypeError, ValueError):
            continue
        real = os.path.realpath(raw)
        if _under(raw, rec["watch"]) or _under(real, rec["watch"]):
            rec["opened"].append(real)
        if write and not _under(real, rec["allow"]):
            rec["written"].append(real)


_INSTALLED = []


@pytest.fixture
def audit():
    """``with audit(watch=[...], allow=[...]) as rec:`` then ``rec["opened"]``, ``rec["written"]``
    and ``rec["read_by_any"]`` (watched files whose access time moved) are the violations."""
    if not _INSTALLED:
        sys.addaudithook(_hook)
        _INSTALLED.append(True)

    @contextlib.contextmanager
    def _audit(watch=(), allow=()):
        watch = [os.path.realpath(w) for w in watch]
        # Library caches a plotting import creates are not the bundle's business.
        caches = [os.path.expanduser(p) for p in ("~/.config/matplotlib", "~/.cache/matplotlib", "~/.cache/fontconfig")]
        caches += [os.environ[k] for k in ("MPLCONFIGDIR",) if k in os.environ]
        allow = [os.path.realpath(a) for a in [*allow, *caches]] + ["/dev", "/proc"]
        files = [Path(dp) / f for w in watch if os.path.isdir(w) for dp, _, fs in os.walk(w) for f in fs]
        files += [Path(w) for w in watch if os.path.isfile(w) and os.access(w, os.W_OK) and not w.startswith("/etc")]
        for f in files:
            os.utime(f, (1, f.stat().st_mtime), follow_symlinks=False)
        rec = {"watch": watch, "allow": allow, "opened": [], "written": [], "read_by_any": []}
        _ACTIVE.append(rec)
        try:
            yield rec
        finally:
            _ACTIVE.pop()
            rec["read_by_any"] = [str(f) for f in files if f.exists() and f.stat().st_atime != 1]

    return _audit


@pytest.fixture(scope="session")
def good_bundle(tmp_path_factory) -> Path:
    """A writable copy of the shipped default bundle."""
    from dymu_rt.runtime import default_bundle_path

    dest = tmp_path_factory.mktemp("good") / "bundle"
    shutil.copytree(default_bundle_path(), dest)
    return dest


@pytest.fixture(scope="session")
def good_image(tmp_path_factory) -> Path:
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "scene.png"
    Image.new("RGB", (64, 64), (120, 80, 40)).save(p)
    return p
