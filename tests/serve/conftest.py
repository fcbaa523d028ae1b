"""Fixtures of the serving tests: Triton repositories exported from the shipped bundle."""

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shipped_bundle():
    from dymu_rt.bundle.layout import default_bundle_path

    return default_bundle_path()


@pytest.fixture(scope="session")
def shipped_repo(shipped_bundle, tmp_path_factory):
    """The shipped bundle exported for the ONNX Runtime backend (read-only for tests)."""
    from dymu_rt.serve.triton import export_triton

    repo = tmp_path_factory.mktemp("triton") / "repo"
    export_triton(shipped_bundle, repo, backend="onnxruntime", max_batch=8)
    return repo


def repository_digest(repo: Path) -> str:
    """sha256 over every file path and content of a repository (to prove nothing changed)."""
    from dymu_rt.utils.io import sha256_bytes, sha256_file

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
    return dst


@pytest.fixture
def small_bundle(shipped_bundle, tmp_path):
    """The shipped bundle pruned to 3 topologies (fast to export; many preferences fall back
    to the nearest grid point)."""
    return prune_bundle(shipped_bundle, tmp_path / "bundle", 3)
