"""The default bundle shipped in the package: verified, labelled synthetic, read-only."""

import numpy as np
import pytest

from dymu_rt.bundle.layout import verify_bundle
from dymu_rt.core.errors import ValidationError
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
    # 7 MiB: the BMTAS-recipe model (issue 12) also modulates its decoder BNs, so its weight
    # hypernet (2.2 MiB) is as large as the graphs' weights; with every tensor stored once
    # (issue 14, schema 3) fold_params no longer repeats the modulated convs (6.2 MiB).
    assert size < 7 * 2**20, f"default bundle is {size / 2**20:.1f} MiB; it must stay a few MB"


def test_default_bundle_runs_without_writing_into_the_package():
    path = default_bundle_path()
    before = _tree_snapshot(path)
    rt = Runtime.open(path)
    rt.set_preference((0.6, 0.2, 0.2), 0.5)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    out = rt.infer(x)
    assert set(out) == {"semseg", "normals", "depth"} and out["semseg"].shape == (1, 13, 64, 64)
    assert rt.stats()["binding"] == "exact"
    rt.close()
    assert _tree_snapshot(path) == before


def test_default_bundle_profiles_into_the_user_cache_that_budget_and_inspect_read(tmp_path, monkeypatch):
    """The dead end of issue 25: `run --latency-budget` on the shipped bundle said to run
    `profile`, which refused the read-only bundle. Its table now goes to the per-user cache."""
    from dymu_rt.bundle.latency_cache import cache_root
    from dymu_rt.bundle.summary import describe_bundle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = default_bundle_path()
    before = _tree_snapshot(path)
    rt = Runtime.open(path)
    with pytest.raises(ValidationError, match="no latency table.*run `dymu-rt profile` on this device"):
        rt.choose_for_budget((0.6, 0.2, 0.2), 1000.0)       # the command that works on the shipped bundle
    table = rt.profile_topologies(iters=1, warmup=0)
    rt.close()
    assert _tree_snapshot(path) == before
    files = list((tmp_path / "cache" / "dymu-rt" / "latency").glob("*.json"))
    assert len(files) == 1 and cache_root() == tmp_path / "cache" / "dymu-rt"
    assert rt.latency_store == str(files[0])

    rt2 = Runtime.open(path)                    # a new process would read the same cache
    choice = rt2.choose_for_budget((0.6, 0.2, 0.2), 1000.0)
    assert choice["topology"] in table and choice["c"] == 0.0
    rt2.close()
    info = describe_bundle(path)
    assert info["latency"]["x86-64-cpu"]["source"] == str(files[0])
    assert {row["topology"] for row in info["latency"]["x86-64-cpu"]["rows"]} == set(table)

    # Another library version is another key: the table is not reused.
    from dymu_rt.bundle import latency_cache as LC

    other = {**LC.library_versions(), "onnxruntime": "0.0.0"}
    assert LC.load(rt2.manifest, "x86-64-cpu", other) is None
    # A damaged cache file is treated as absent, not as an error.
    files[0].write_text("{not json")
    rt3 = Runtime.open(path)
    with pytest.raises(ValidationError, match="no latency table"):
        rt3.choose_for_budget((0.6, 0.2, 0.2), 1000.0)
    rt3.close()


def test_int8_on_the_read_only_default_bundle_says_to_calibrate_a_copy():
    from dymu_rt.core.errors import BundleError

    path = default_bundle_path()
    before = _tree_snapshot(path)
    with pytest.raises(BundleError, match=r"read-only: copy it .*dymu-rt calibrate my-bundle"):
        Runtime.open(path, profile="x86-64-cpu-int8")
    assert _tree_snapshot(path) == before
