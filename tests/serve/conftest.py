"""Fixtures of the serving tests: Triton repositories exported from the shipped bundle."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serve_helpers import prune_bundle  # noqa: E402  (a module of its own: `conftest` is ambiguous)


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


@pytest.fixture
def small_bundle(shipped_bundle, tmp_path):
    """The shipped bundle pruned to 3 topologies (fast to export; many preferences fall back
    to the nearest grid point)."""
    return prune_bundle(shipped_bundle, tmp_path / "bundle", 3)
