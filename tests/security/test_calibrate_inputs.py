"""Calibrate verifies every input of the INT8 graphs and keys its cache by all of them
(issue 16, item 4): corrupt weights are refused before anything is quantized, so no
graph calibrated on them can be reused after the weights are repaired."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from dymu_rt.bundle.manifest import Manifest
from dymu_rt.bundle.sections import cache_key, fold_params_sha256, weights_sha256

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))
from run_fixture import make_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    from dymu_rt.methods import build_bundle

    base = tmp_path_factory.mktemp("cal")
    build_bundle(make_tiny_run(base / "run"), base / "bundle", step="1", c_step="1", progress=False)
    return base / "bundle"


def test_corrupt_weights_refused_then_repaired_weights_calibrate(small_bundle, tmp_path, capsys):
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    w = b / "graphs" / "weights.bin"
    good = w.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x40
    w.write_bytes(bytes(bad))
    code, _, err = run_cli(capsys, "calibrate", str(b), "--synth", "2")
    assert code != 0 and "weights.bin is corrupt" in err and len(err.strip().splitlines()) == 1, err
    assert not (b / "calibration").exists()           # nothing quantized from the corrupt weights
    w.write_bytes(good)
    code, _, err = run_cli(capsys, "calibrate", str(b), "--synth", "2")
    assert code == 0, err
    m = json.loads((b / "manifest.json").read_text())
    digest = m["int8"]["calibration"]["digest"]
    man = Manifest.from_dict(m)
    for tid, rec in m["int8"]["files"].items():
        assert rec["key"] == cache_key(m["topologies"][tid]["sha256"], digest, "minmax",
                                       weights_sha256(man), fold_params_sha256(man))


def test_corrupt_fold_params_refused(small_bundle, tmp_path, capsys):
    """Schema 3 derives the raw conv weights and the anchor BN feeds from fold_params: an input too."""
    b = tmp_path / "b"
    shutil.copytree(small_bundle, b)
    f = b / "controller" / "fold_params.safetensors"
    bad = bytearray(f.read_bytes())
    bad[len(bad) // 2] ^= 0x40
    f.write_bytes(bytes(bad))
    code, _, err = run_cli(capsys, "calibrate", str(b), "--synth", "2")
    assert code != 0 and "fold_params.safetensors is corrupt" in err and len(err.strip().splitlines()) == 1, err
    assert not (b / "calibration").exists()


def test_cache_key_covers_every_input():
    base = cache_key("g" * 64, "d" * 64, "minmax", "w" * 64, "f" * 64)
    assert len({base, cache_key("h" * 64, "d" * 64, "minmax", "w" * 64, "f" * 64),
                cache_key("g" * 64, "e" * 64, "minmax", "w" * 64, "f" * 64),
                cache_key("g" * 64, "d" * 64, "entropy", "w" * 64, "f" * 64),
                cache_key("g" * 64, "d" * 64, "minmax", "v" * 64, "f" * 64),
                cache_key("g" * 64, "d" * 64, "minmax", "w" * 64, "e" * 64)}) == 6
