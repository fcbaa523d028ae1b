"""Fixtures of the evaluation tests: tiny run directories (tests/compile/run_fixture.py)."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))

from run_fixture import make_tiny_run, tiny_preset  # noqa: E402

torch.set_num_threads(1)


def _add_phn_bn(run_path: Path) -> None:
    """Save a PHN-BN baseline (anchor weights, small random BN hypernet) and mark it done."""
    from dymu_rt.run.layout import RunDir, save_module
    from dymu_rt.training.phn import PHNBN

    run = RunDir(run_path)
    model = PHNBN(run.load_anchor())
    with torch.no_grad():
        out = [m for m in model.hyper.modules() if isinstance(m, torch.nn.Linear)][-1]
        out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(5))
    save_module(model, run.module_path("phn_bn"))
    run.mark_done("phn-bn", {"step": 0, "fixture": True})


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """A tiny complete run (anchor, both hypernets) plus a PHN-BN baseline."""
    path = make_tiny_run(tmp_path_factory.mktemp("eval") / "run")
    _add_phn_bn(path)
    return path


@pytest.fixture(scope="module")
def no_weight_run(tmp_path_factory):
    """A tiny run whose weight hypernet stage has not finished, of an unregistered preset
    without an HV reference (so the data-dependent reference is used)."""
    from dymu_rt.run.layout import RunDir
    from dymu_rt.core.io import atomic_write_json

    preset = dataclasses.replace(tiny_preset(), name="tiny-eval", hv_reference=None)
    path = make_tiny_run(tmp_path_factory.mktemp("eval") / "run", seed=1, preset=preset)
    run = RunDir(path)
    cfg = run.read_config()
    cfg["stages"]["weight"] = {"done": False}
    atomic_write_json(run.config_path, cfg)
    return path
