"""Fixtures of the compile tests: a tiny anchor net and a tiny complete run directory."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from run_fixture import make_tiny_run, randomize_bn, tiny_preset  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_anchor():
    """A random tiny anchor (3 tasks, 9 layers, 32x32) with randomized BN, eval mode."""
    torch.manual_seed(0)
    anchor = tiny_preset().build().eval()
    randomize_bn(anchor, torch.Generator().manual_seed(1))
    return anchor


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A complete tiny run directory (random weights, every stage marked done)."""
    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")
