"""Bundle bytes are pinned: the committed tiny runs (a DYMU grid, an AdaShare run and two DAG
runs, one of whose masks feed states no task reads out, tests/compile/golden/runs/) build into bundles whose every file has the sha256 recorded in
tests/compile/golden/bundles.json (made by ``python scripts/golden_bundles.py --regenerate``,
which records the revision and the torch/onnx versions). Issue 26's safety net: a refactor
of the build (the methods registry) must not change one byte. ~9 s on 2 cores.

The bytes do not depend on the machine: ``python scripts/golden_bundles.py --matrix`` checks
them under OMP_NUM_THREADS 1/2 x ATEN_CPU_CAPABILITY default/avx2/avx512 (all identical when
made), so the comparison here is exact, float tensors included."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("golden_bundles", ROOT / "scripts" / "golden_bundles.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


def test_golden_bundles_are_byte_identical(tmp_path):
    reason, differ = golden.check(tmp_path)
    if reason:
        pytest.skip(reason)
    assert differ == [], ("bundle files changed (if that is intended -- a new producer version, a format "
                          "change -- regenerate: python scripts/golden_bundles.py --regenerate):\n" + "\n".join(differ))


def test_a_changed_byte_is_reported(tmp_path):
    """The comparison can fail: one flipped digest and one missing file are both named."""
    want = {"bundles": {"dymu": {"manifest.json": "a" * 64, "graphs/x.onnx": "b" * 64}}}
    got = {"dymu": {"manifest.json": "c" * 64}}
    lines = golden.diff(want, got)
    assert len(lines) == 2 and lines[0].startswith("dymu/graphs/x.onnx") and "manifest.json" in lines[1]
    assert golden.diff(want, {"dymu": dict(want["bundles"]["dymu"])}) == []
