"""CIFAR-100 multi-task loader on fixtures in the official binary format."""

import numpy as np
import pytest
import torch

from dymu_rt.data.cifar import RECORD, Cifar100MultiTask
from dymu_rt.core.labels import CIFAR100_FINE_TO_COARSE, CIFAR100_SUPERCLASSES, cifar100_local_labels
from dymu_rt.core.errors import DataError, ValidationError

torch.set_num_threads(1)


def record(fine: int, r: int, g: int, b: int, coarse=None) -> bytes:
    coarse = int(CIFAR100_FINE_TO_COARSE[fine]) if coarse is None else coarse
    planes = np.concatenate([np.full(1024, v, np.uint8) for v in (r, g, b)])
    planes[0] = 7  # top-left red pixel marks the plane order
    return bytes([coarse, fine]) + planes.tobytes()


def write_bin(path, fines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(record(f, 10 + i, 100, 250) for i, f in enumerate(fines)))


def test_superclass_names_match_presets():
    from dymu_rt.models.presets import CIFAR100_SUPERCLASSES as preset_names

    assert tuple(preset_names) == CIFAR100_SUPERCLASSES


def test_local_labels_are_sorted_fine_ids():
    local = cifar100_local_labels()
    # aquatic_mammals = beaver 4, dolphin 30, otter 55, seal 72, whale 95
    assert [int(local[f]) for f in (4, 30, 55, 72, 95)] == [0, 1, 2, 3, 4]
    for c in range(20):
        assert sorted(local[CIFAR100_FINE_TO_COARSE == c]) == [0, 1, 2, 3, 4]


def test_reads_binary_records(tmp_path):
    write_bin(tmp_path / "cifar-100-binary" / "train.bin", [30, 1, 95])  # dolphin, fish, whale
    ds = Cifar100MultiTask(tmp_path, "train")
    assert len(ds) == 3
    s = ds[0]
    img = s["image"]
    assert img.shape == (3, 32, 32)
    assert img[0, 0, 0] == pytest.approx(7 / 255) and img[0, 0, 1] == pytest.approx(10 / 255)
    assert img[1, 5, 5] == pytest.approx(100 / 255) and img[2, 31, 31] == pytest.approx(250 / 255)
    assert set(s["targets"]) == set(CIFAR100_SUPERCLASSES)
    assert s["targets"]["aquatic_mammals"].item() == 1 and s["masks"]["aquatic_mammals"].item()
    assert sum(bool(m) for m in s["masks"].values()) == 1
    assert s["targets"]["fish"].shape == () and not s["masks"]["fish"]
    assert ds[1]["masks"]["fish"] and ds[2]["targets"]["aquatic_mammals"].item() == 4
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["masks"]["fish"].tolist() == [False, True]


def test_task_filter_val_split_resize_augment(tmp_path):
    write_bin(tmp_path / "test.bin", [30, 1, 95, 1])
    ds = Cifar100MultiTask(tmp_path, "val", tasks=["fish"], size=(16, 16), augment=True)
    assert len(ds) == 2 and set(ds[0]["targets"]) == {"fish"}
    assert ds[1]["image"].shape == (3, 16, 16) and ds[1]["masks"]["fish"]
    with pytest.raises(ValidationError, match="dragons"):
        Cifar100MultiTask(tmp_path, "val", tasks=["dragons"])


def test_truncated_and_inconsistent_files(tmp_path):
    p = tmp_path / "train.bin"
    write_bin(p, [30, 1])
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match=f"not a positive multiple of {RECORD}.*truncated"):
        Cifar100MultiTask(tmp_path, "train")
    p.write_bytes(record(30, 0, 0, 0, coarse=3))
    with pytest.raises(DataError, match="record 0: fine label 30 belongs to superclass 0, not 3"):
        Cifar100MultiTask(tmp_path, "train")
    p.write_bytes(record(30, 0, 0, 0, coarse=25))
    with pytest.raises(DataError, match="coarse label 25"):
        Cifar100MultiTask(tmp_path, "train")
    with pytest.raises(DataError, match="test.bin"):
        Cifar100MultiTask(tmp_path, "val")
