"""Ship the router's dymu-rt code with the model: the core's files, copied byte for byte.

Triton's Python backend runs ``model.py`` in the server's Python, where dymu-rt (and torch)
are not installed. The router needs only the torch-free core: the preference rules, the one
selector, the tree rules, a numpy safetensors reader and the router's use of them
(:mod:`dymu_rt.core.routing`). Core modules import each other relatively (a rule of
:mod:`dymu_rt.core`), so the export copies those files unchanged into the router's version
folder as the package ``dymu_vendor``; a ``SOURCES.json`` beside them names the dymu-rt
version and each file's sha256. The router therefore validates a preference with exactly
the CLI's code; the tests check every shipped file against its source and that no vendored
module imports anything but the standard library, numpy and its fellow vendored modules.

``model.py`` puts its own folder on ``sys.path`` and imports ``dymu_vendor``: Triton's
Python backend loads each model in its own stub process, so the name never meets a real
dymu-rt there.
"""

from __future__ import annotations

import json
from pathlib import Path

import dymu_rt
from dymu_rt.core.io import sha256_bytes

PACKAGE = "dymu_vendor"
#: the core files the router imports (the closure of ``routing.py``'s relative imports);
#: copied byte for byte
MODULES = (
    "__init__.py",
    "errors.py",
    "preference.py",
    "selector.py",
    "tree.py",
    "safetensors_np.py",
    "routing.py",
)
LISTING = "SOURCES.json"


def source_root() -> Path:
    """The installed ``dymu_rt/core`` folder the vendored files are copied from."""
    return Path(dymu_rt.__file__).resolve().parent / "core"


def vendored_files() -> dict[str, bytes]:
    """Path (relative to the router's version folder) -> content of every vendored file, plus
    ``dymu_vendor/SOURCES.json`` (the dymu-rt version and each source's sha256)."""
    root = source_root()
    files: dict[str, bytes] = {}
    listing = {}
    for rel in MODULES:
        src = (root / rel).read_bytes()
        files[f"{PACKAGE}/{rel}"] = src
        listing[rel] = sha256_bytes(src)
    files[f"{PACKAGE}/{LISTING}"] = (json.dumps(
        {"generated_by": "dymu-rt export triton (dymu_rt/serve/triton/vendor.py); do not edit",
         "dymu_rt_version": dymu_rt.__version__, "source": "dymu_rt/core", "sha256": listing},
        indent=2) + "\n").encode("utf-8")
    return files
