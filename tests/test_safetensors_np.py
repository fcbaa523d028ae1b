"""The numpy-only safetensors reader/writer agrees with the safetensors package both ways."""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from dymu_rt.core import safetensors_np


def _tensors():
    rng = np.random.default_rng(0)
    return {"a.s0": rng.random((5,), dtype=np.float32), "b": rng.random((2, 3)).astype(np.float64),
            "idx": np.arange(6, dtype=np.int64).reshape(3, 2), "empty": np.zeros((0, 4), np.float32)}


def test_reads_what_safetensors_writes(tmp_path):
    save_file(_tensors(), str(tmp_path / "x.safetensors"))
    got = safetensors_np.load(tmp_path / "x.safetensors")
    for k, v in _tensors().items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)


def test_safetensors_reads_what_it_writes(tmp_path):
    (tmp_path / "y.safetensors").write_bytes(safetensors_np.dumps(_tensors(), {"bundle_sha256": "ab"}))
    got = load_file(str(tmp_path / "y.safetensors"))
    for k, v in _tensors().items():
        assert np.array_equal(got[k], v)
    assert safetensors_np.load(tmp_path / "y.safetensors").keys() == _tensors().keys()


def test_malformed_file_is_a_value_error(tmp_path):
    (tmp_path / "z").write_bytes(b"\xff" * 4)
    with pytest.raises(ValueError, match="too short"):
        safetensors_np.load(tmp_path / "z")
    (tmp_path / "z").write_bytes((100).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="runs past"):
        safetensors_np.load(tmp_path / "z")
