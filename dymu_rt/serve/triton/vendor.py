"""Ship the router's dymu-rt code with the model: a vendored copy generated from the one source.

Triton's Python backend runs ``model.py`` in the server's Python, where dymu-rt (and torch)
are not installed. The router needs only numpy-level code — the preference rules, the tree
rules, its own decisions (:mod:`dymu_rt.serve.triton.routing`) — so the export copies those
source files into the router's version folder as the package ``dymu_vendor``, rewriting only
the ``dymu_rt`` of their ``import``/``from`` lines to ``dymu_vendor`` (the vendored parents'
``__init__`` files are empty: the real ones import torch). Nothing else changes, so the
router validates a preference exactly as the CLI does; :func:`vendored_text` is the one
rule, and the tests check every shipped file against it and that no vendored module imports
anything but the standard library, numpy and its fellow vendored modules.

``model.py`` puts its own folder on ``sys.path`` and imports ``dymu_vendor``: Triton's
Python backend loads each model in its own stub process, so the name never meets a real
dymu-rt there.
"""

from __future__ import annotations

import re
from pathlib import Path

import dymu_rt
from dymu_rt.utils.io import sha256_bytes

PACKAGE = "dymu_vendor"
#: source files of the router, relative to the dymu_rt package (each imports only these,
#: the standard library and numpy)
MODULES = (
    "errors.py",
    "control/preference.py",
    "control/selector.py",
    "models/tree.py",
    "utils/safetensors_np.py",
    "serve/triton/routing.py",
)
_IMPORT = re.compile(r"^(\s*(?:from|import)\s+)dymu_rt(?=[.\s])", re.MULTILINE)


def source_root() -> Path:
    """The installed ``dymu_rt`` package folder the vendored files are copied from."""
    return Path(dymu_rt.__file__).resolve().parent


def vendored_text(source: str) -> str:
    """``source`` with ``dymu_rt`` replaced by ``dymu_vendor`` in its import statements only."""
    return _IMPORT.sub(lambda m: m.group(1) + PACKAGE, source)


def vendored_files() -> dict[str, bytes]:
    """Path (relative to the router's version folder) -> content of every vendored file,
    the package ``__init__`` files included (the top one lists each source's sha256)."""
    root = source_root()
    files: dict[str, bytes] = {}
    listing = []
    for rel in MODULES:
        src = (root / rel).read_bytes()
        files[f"{PACKAGE}/{rel}"] = vendored_text(src.decode("utf-8")).encode("utf-8")
        listing.append(f"    {rel!r}: {sha256_bytes(src)!r},")
        parts = Path(rel).parts[:-1]
        for i in range(1, len(parts) + 1):
            files.setdefault(f"{PACKAGE}/{'/'.join(parts[:i])}/__init__.py", b"")
    files[f"{PACKAGE}/__init__.py"] = (
        '"""dymu-rt code vendored into this Triton router by `dymu-rt export triton`: generated,\n'
        'do not edit. Each module is the dymu_rt source of the same path with `dymu_rt` renamed\n'
        'to `dymu_vendor` in its import lines (dymu_rt/serve/triton/vendor.py)."""\n\n'
        f"DYMU_RT_VERSION = {dymu_rt.__version__!r}\n"
        "SOURCES_SHA256 = {\n" + "\n".join(listing) + "\n}\n").encode("utf-8")
    return files
