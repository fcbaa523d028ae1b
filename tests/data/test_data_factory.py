"""make_dataset: layout detection and the errors a wrong path or task gives."""

import numpy as np
import pytest
import torch

from dymu_rt.data import detect_layout, make_dataset
from dymu_rt.data.cifar import Cifar100MultiTask
from dymu_rt.data.nyuv2 import NYUv2Dataset
from dymu_rt.data.synth import SynthDataset
from dymu_rt.core.errors import DataError, ValidationError

torch.set_num_threads(1)


def test_synth_source_picks_layout_from_tasks():
    ds = make_dataset("synth", "train", (16, 16), ["semseg", "normals", "depth"], n=3)
    assert isinstance(ds, SynthDataset) and ds.layout == "nyuv2" and len(ds) == 3
    ds = make_dataset("synth", "val", 16, ["semseg", "human_parts", "saliency"], n=2, augment=True)
    assert ds.layout == "pascal" and ds.split == "val" and ds.augment is not None
    assert ds[0]["image"].shape == (3, 16, 16)
    assert len(make_dataset("synth", "val", 16, ["depth"])) == 400


def test_detects_each_layout(tmp_path):
    nyu = tmp_path / "nyu"
    for sub in ("image", "label", "depth", "normal"):
        (nyu / "train" / sub).mkdir(parents=True)
    np.save(nyu / "train/image/0.npy", np.zeros((4, 6, 3), np.float32))
    np.save(nyu / "train/label/0.npy", np.zeros((4, 6), np.float32))
    np.save(nyu / "train/depth/0.npy", np.ones((4, 6, 1), np.float32))
    np.save(nyu / "train/normal/0.npy", np.ones((4, 6, 3), np.float32))
    assert detect_layout(nyu) == "nyuv2"
    ds = make_dataset(nyu, "train", (8, 12), ["semseg", "normals", "depth"])
    assert isinstance(ds, NYUv2Dataset) and ds[0]["targets"]["depth"].shape == (1, 8, 12)

    pas = tmp_path / "pas"
    (pas / "JPEGImages").mkdir(parents=True)
    (pas / "ImageSets" / "Context").mkdir(parents=True)
    assert detect_layout(pas) == "pascal"
    with pytest.raises(DataError, match="train.txt"):
        make_dataset(pas, "train", 8, ["semseg"])

    cif = tmp_path / "cif" / "cifar-100-binary"
    cif.mkdir(parents=True)
    (cif / "test.bin").write_bytes(bytes([0, 4]) + bytes(3072))
    assert detect_layout(tmp_path / "cif") == "cifar100"
    ds = make_dataset(tmp_path / "cif", "val", 32, ["aquatic_mammals"])
    assert isinstance(ds, Cifar100MultiTask) and ds[0]["targets"]["aquatic_mammals"].item() == 0


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        make_dataset(tmp_path / "missing", "train", 16, ["semseg"])
    (tmp_path / "junk").mkdir()
    with pytest.raises(DataError, match="not a known dataset layout"):
        make_dataset(tmp_path / "junk", "train", 16, ["semseg"])
    with pytest.raises(ValidationError, match="split 'test'"):
        make_dataset("synth", "test", 16, ["semseg"])
    with pytest.raises(ValidationError, match="task 'segm'"):
        make_dataset("synth", "train", 16, ["segm"])
