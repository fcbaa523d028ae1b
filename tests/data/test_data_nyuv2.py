"""NYU-v2 loader on fixtures written in MTAN's exact on-disk format, and its bad-data errors."""

import numpy as np
import pytest
import torch

from dymu_rt.data.nyuv2 import NYUv2Dataset
from dymu_rt.core.errors import DataError, ValidationError

torch.set_num_threads(1)
H, W = 6, 8


def write_nyu(root, n=3, split="train", image_scale=255.0, depth_hw1=True):
    """MTAN files: image HxWx3 float, label HxW float (-1 ignore), depth HxWx1, normal HxWx3."""
    rng = np.random.default_rng(0)
    d = root / split
    for sub in ("image", "label", "depth", "normal"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    data = []
    for i in range(n):
        img = rng.uniform(0, 1, (H, W, 3)).astype(np.float32)
        label = rng.integers(-1, 13, (H, W)).astype(np.float32)
        depth = rng.uniform(0.5, 9.0, (H, W)).astype(np.float32)
        depth[0, 0] = 0.0
        normal = rng.normal(size=(H, W, 3)).astype(np.float32)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        normal *= 0.9  # stored normals need not be unit: the loader renormalizes
        normal[1, 1] = 0.0
        np.save(d / "image" / f"{i}.npy", img * image_scale)
        np.save(d / "label" / f"{i}.npy", label)
        np.save(d / "depth" / f"{i}.npy", depth[..., None] if depth_hw1 else depth)
        np.save(d / "normal" / f"{i}.npy", normal)
        data.append((img, label, depth, normal))
    return data


def test_reads_mtan_layout(tmp_path):
    data = write_nyu(tmp_path, image_scale=255.0)
    ds = NYUv2Dataset(tmp_path, "train")
    assert len(ds) == 3
    img, label, depth, normal = data[1]
    s = ds[1]
    assert torch.allclose(s["image"], torch.from_numpy(img).permute(2, 0, 1), atol=1e-6)
    seg = s["targets"]["semseg"]
    assert seg.dtype == torch.int64 and torch.equal(seg, torch.from_numpy(label).long())
    assert torch.equal(s["masks"]["semseg"], torch.from_numpy(label >= 0))
    assert s["targets"]["depth"].shape == (1, H, W)
    assert torch.equal(s["targets"]["depth"][0], torch.from_numpy(depth))
    assert not s["masks"]["depth"][0, 0] and s["masks"]["depth"].sum() == H * W - 1
    n = s["targets"]["normals"]
    assert not s["masks"]["normals"][1, 1] and torch.equal(n[:, 1, 1], torch.zeros(3))
    valid = s["masks"]["normals"]
    assert torch.allclose(n.norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-5)
    expected = torch.from_numpy(normal / 0.9).permute(2, 0, 1)
    assert torch.allclose(n[:, valid], expected[:, valid], atol=1e-5)


def test_image_range_0_1_and_hw_depth(tmp_path):
    data = write_nyu(tmp_path, image_scale=1.0, depth_hw1=False)
    s = NYUv2Dataset(tmp_path, "train", tasks=("depth",))[0]
    assert torch.allclose(s["image"], torch.from_numpy(data[0][0]).permute(2, 0, 1))
    assert set(s["targets"]) == {"depth"}


def test_resize_n_and_tasks(tmp_path):
    write_nyu(tmp_path)
    ds = NYUv2Dataset(tmp_path, "train", size=(12, 16), n=2)
    assert len(ds) == 2
    s = ds[0]
    assert s["image"].shape == (3, 12, 16) and s["targets"]["semseg"].shape == (12, 16)
    with pytest.raises(ValidationError, match="edges"):
        NYUv2Dataset(tmp_path, "train", tasks=("semseg", "edges"))


def test_missing_folder(tmp_path):
    write_nyu(tmp_path)
    with pytest.raises(DataError, match="val"):
        NYUv2Dataset(tmp_path, "val")
    (tmp_path / "train" / "normal").rename(tmp_path / "train" / "normals")
    with pytest.raises(DataError, match="normal"):
        NYUv2Dataset(tmp_path, "train")


def test_count_mismatch(tmp_path):
    write_nyu(tmp_path)
    (tmp_path / "train" / "label" / "2.npy").unlink()
    with pytest.raises(DataError, match="count mismatch.*label"):
        NYUv2Dataset(tmp_path, "train")


def test_gap_in_file_names(tmp_path):
    write_nyu(tmp_path)
    for sub in ("image", "label", "depth", "normal"):
        (tmp_path / "train" / sub / "1.npy").rename(tmp_path / "train" / sub / "7.npy")
    with pytest.raises(DataError, match="7.npy.*missing.*1.npy"):
        NYUv2Dataset(tmp_path, "train")


def test_wrong_shape(tmp_path):
    write_nyu(tmp_path)
    np.save(tmp_path / "train" / "label" / "0.npy", np.zeros((H, W + 1), np.float32))
    with pytest.raises(DataError, match=r"label/0.npy has shape 6x9; expected a label map of shape 6x8"):
        NYUv2Dataset(tmp_path, "train")[0]
    np.save(tmp_path / "train" / "image" / "1.npy", np.zeros((H, W), np.float32))
    with pytest.raises(DataError, match="image/1.npy.*RGB"):
        NYUv2Dataset(tmp_path, "train")[1]


def test_truncated_file(tmp_path):
    write_nyu(tmp_path)
    p = tmp_path / "train" / "depth" / "0.npy"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="depth/0.npy.*truncated"):
        NYUv2Dataset(tmp_path, "train")[0]


def test_pickled_and_bad_values_are_refused(tmp_path):
    write_nyu(tmp_path)
    np.save(tmp_path / "train" / "image" / "0.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    with pytest.raises(DataError, match="image/0.npy"):
        NYUv2Dataset(tmp_path, "train")[0]
    np.save(tmp_path / "train" / "label" / "1.npy", np.full((H, W), 13, np.float32))
    with pytest.raises(DataError, match="label 13; expected 0..12 or -1"):
        NYUv2Dataset(tmp_path, "train")[1]
    np.save(tmp_path / "train" / "label" / "2.npy", np.full((H, W), 0.5, np.float32))
    with pytest.raises(DataError, match="non-integer"):
        NYUv2Dataset(tmp_path, "train")[2]
