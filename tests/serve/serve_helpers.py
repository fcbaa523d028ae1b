"""Helpers of the serving tests (imported by name: a `conftest` import would be ambiguous, the
runtime tests have a conftest module too)."""

import json
import shutil
from pathlib import Path

from dymu_rt.bundle.checksum import write_checksum


def repository_digest(repo: Path) -> str:
    """sha256 over every file path and content of a repository (to prove nothing changed)."""
    from dymu_rt.core.io import sha256_bytes, sha256_file

    parts = [f"{p.relative_to(repo)}:{sha256_file(p)}" for p in sorted(Path(repo).rglob("*")) if p.is_file()]
    return sha256_bytes("\n".join(parts).encode())


def prune_bundle(src: Path, dst: Path, keep: int, tag: str = "") -> Path:
    """A valid smaller bundle: ``src`` with only its ``keep`` most used topologies and their
    grid points (``tag`` changes the manifest, as a rebuild would)."""
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    kept = sorted(m["topologies"], key=lambda t: -m["topologies"][t]["n_points"])[:keep]
    for t in set(m["topologies"]) - set(kept):
        (dst / m["topologies"].pop(t)["file"]).unlink()
    m["points"] = [p for p in m["points"] if p["topology"] in kept]
    m["grid"]["n_points"] = len(m["points"])
    m["build"] = {**m.get("build", {}), "tag": tag}
    (dst / "manifest.json").write_text(json.dumps(m, indent=1, sort_keys=True))
    write_checksum(dst)          # as the build that made it would have (bundles carry a checksum)
    return dst
