"""The weight pool: stored tensors memory-mapped once, raw conv weights derived from the fold."""

from __future__ import annotations

import numpy as np
import pytest

from dymu_rt.core.errors import BundleError
from dymu_rt.bundle.weight_pool import WeightPool, anchor_scale, needs_raw_copy

EPS = 1e-5


def _pool(tmp_path, gamma, store_raw=False):
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fold = {"s.bn_weight": np.asarray(gamma, np.float32), "s.bn_bias": np.zeros(4, np.float32),
            "s.bn_mean": rng.standard_normal(4).astype(np.float32),
            "s.bn_var": rng.random(4).astype(np.float32) + 0.5}
    folded = (raw * anchor_scale(fold, "s", EPS).reshape(-1, 1, 1, 1)).astype(np.float32)
    head = rng.standard_normal((2, 4)).astype(np.float32)
    blob = bytearray()
    index = {}
    for name, arr in (("s.conv.weight", folded), ("head.weight", head)):
        blob += b"\0" * (-len(blob) % 64)
        index[name] = {"offset": len(blob), "length": arr.nbytes, "dtype": "float32", "shape": list(arr.shape),
                       "sha256": ""}
        blob += arr.tobytes()
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs/weights.bin").write_bytes(bytes(blob))
    if store_raw:
        fold["s.weight"] = raw
    return WeightPool(tmp_path, {"file": "graphs/weights.bin", "tensors": index}, fold, EPS), raw, head


def test_raw_weight_is_recovered_from_the_folded_copy(tmp_path):
    pool, raw, head = _pool(tmp_path, [1.0, -0.5, 2.0, 0.1])
    np.testing.assert_allclose(pool.raw_weight("s"), raw, rtol=1e-6, atol=1e-7)
    assert pool.raw_weight("s") is pool.raw_weight("s")              # derived once, then shared
    np.testing.assert_array_equal(pool.tensor("head.weight"), head)
    assert not pool.tensor("head.weight").flags.writeable            # a view of the mapped file
    assert pool.nbytes(["head.weight", "head.weight"], ["s", "s"]) == head.nbytes + raw.nbytes


def test_zero_bn_scale_needs_the_stored_raw_weight(tmp_path):
    pool, raw, _ = _pool(tmp_path, [1.0, 0.0, 2.0, 0.1])
    assert needs_raw_copy(pool._fold, "s", EPS)
    with pytest.raises(BundleError, match="zero BN scale"):
        pool.raw_weight("s")
    pool2, raw2, _ = _pool(tmp_path / "b", [1.0, 0.0, 2.0, 0.1], store_raw=True) if (tmp_path / "b").mkdir() is None \
        else (None, None, None)
    np.testing.assert_array_equal(pool2.raw_weight("s"), raw2)


def test_unknown_tensor_is_one_bundle_error(tmp_path):
    pool, _, _ = _pool(tmp_path, [1.0, 1.0, 1.0, 1.0])
    with pytest.raises(BundleError, match="no tensor 'nope'"):
        pool.tensor("nope")
