"""Fixtures of the runtime tests: the tiny contract bundle (tests/runtime/bundle_fixture.py)."""

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from bundle_fixture import make_params, write_bundle  # noqa: E402


@pytest.fixture(scope="session")
def pristine_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("fixture") / "bundle")


@pytest.fixture
def bundle(pristine_bundle, tmp_path):
    """A fresh, writable copy of the fixture bundle per test (tests may corrupt or extend it)."""
    dst = tmp_path / "bundle"
    shutil.copytree(pristine_bundle, dst)
    return dst


@pytest.fixture(scope="session")
def params():
    return make_params(0)
