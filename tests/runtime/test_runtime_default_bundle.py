"""The default bundle shipped in the package: verified, labelled synthetic, read-only."""

import numpy as np
import pytest

from dymu_rt.bundle.layout import verify_bundle
from dymu_rt.errors import ValidationError
from dymu_rt.runtime import Runtime, default_bundle_path


def _tree_snapshot(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in root.rglob("*") if p.is_file())


def test_default_bundle_verifies_and_says_it_is_synthetic():
    path = default_bundle_path()
    m = verify_bundle(path, check_hashes=True).to_dict()
    assert m["trained_on"] == "synth" and "NOT trained on NYU-v2" in m["training_data"]
    assert m["preset"] == "synth-nyu" and len(m["topologies"]) >= 1
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"default bundle is {size / 2**20:.1f} MiB; it must stay a few MB"


def test_default_bundle_runs_without_writing_into_the_package():
    path = default_bundle_path()
    before = _tree_snapshot(path)
    rt = Runtime.open(path)
    rt.set_preference((0.6, 0.2, 0.2), 0.5)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    out = rt.infer(x)
    assert set(out) == {"semseg", "normals", "depth"} and out["semseg"].shape == (1, 13, 64, 64)
    assert rt.stats()["binding"] == "exact"
    with pytest.raises(ValidationError, match="read-only"):
        rt.profile_topologies(iters=1, warmup=0)
    rt.close()
    assert _tree_snapshot(path) == before


def test_int8_on_the_read_only_default_bundle_says_to_calibrate_a_copy():
    from dymu_rt.errors import BundleError

    path = default_bundle_path()
    before = _tree_snapshot(path)
    with pytest.raises(BundleError, match=r"read-only: copy it .*dymu-rt calibrate my-bundle"):
        Runtime.open(path, profile="x86-64-cpu-int8")
    assert _tree_snapshot(path) == before
