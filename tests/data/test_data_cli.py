"""``dymu-rt data synth``: on-disk datasets the loaders read back, refusals, kill safety."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dymu_rt.data import make_dataset
from dymu_rt.data import dataset_writer as writer_mod
from dymu_rt.data.synth import SynthDataset
from dymu_rt.data.dataset_writer import write_synth_dataset
from dymu_rt.core.errors import ValidationError

torch.set_num_threads(1)
NYU = ("semseg", "normals", "depth")
PASCAL = ("semseg", "human_parts", "saliency", "normals", "edges")


def dymu(*args):
    return subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_writes_nyu_layout_read_back_exactly(tmp_path):
    out = tmp_path / "s"
    res = dymu("data", "synth", "--out", str(out), "--n", "6", "--size", "24x32", "--seed", "3",
               "--val-fraction", "0.34", "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n_train"] == 4 and summary["n_val"] == 2 and summary["size"] == [24, 32]
    info = json.loads((out / "synth.json").read_text())
    assert info["seed"] == 3 and info["classes"][4] == "floor"
    assert len(list((out / "previews").glob("*.png"))) == 5
    assert not list(out.glob(".dymu-synth*"))
    for split, n in (("train", 4), ("val", 2)):
        disk = make_dataset(out, split, (24, 32), NYU)
        ref = SynthDataset(n, (24, 32), seed=3, tasks=NYU, split=split)
        assert len(disk) == n
        for i in range(n):
            a, b = disk[i], ref[i]
            assert torch.equal(a["image"], b["image"])
            for t in NYU:
                assert torch.equal(a["targets"][t], b["targets"][t]), t
                assert torch.equal(a["masks"][t], b["masks"][t]), t
    # MTAN's exact file shapes.
    assert np.load(out / "train" / "depth" / "0.npy").shape == (24, 32, 1)
    assert np.load(out / "train" / "image" / "0.npy").dtype == np.float32


def test_pascal_layout_read_back(tmp_path):
    write_synth_dataset(tmp_path / "p", n=3, size=(24, 28), layout="pascal", val_fraction=0.0,
                        previews=1, progress=False)
    disk = make_dataset(tmp_path / "p", "train", (24, 28), PASCAL)
    ref = SynthDataset(3, (24, 28), tasks=PASCAL)
    for i in range(3):
        a, b = disk[i], ref[i]
        for t in ("semseg", "human_parts", "saliency", "edges"):
            assert torch.equal(a["targets"][t], b["targets"][t]), t
            assert torch.equal(a["masks"][t], b["masks"][t]), t
        cos = (a["targets"]["normals"] * b["targets"]["normals"]).sum(0)
        assert cos.min() > 0.999  # 8-bit PNG normals
        assert (a["image"] - b["image"]).abs().mean() < 0.03  # JPEG


def test_refuses_non_empty_out_unless_overwrite(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValidationError, match="--overwrite"):
        write_synth_dataset(out, n=2, size=16, progress=False)
    write_synth_dataset(out, n=3, size=16, overwrite=True, progress=False)
    write_synth_dataset(out, n=2, size=16, overwrite=True, val_fraction=0.0, progress=False)
    assert (out / "keep.txt").read_text() == "mine"  # only the dataset is replaced
    assert len(make_dataset(out, "train", 16, NYU)) == 2  # no stale files of the bigger run


@pytest.mark.parametrize("args, needle", [
    (["--size", "12y3"], "--size '12y3'"),
    (["--size", "4"], "out of range"),
    (["--n", "0"], "--n 0"),
    (["--val-fraction", "1.0"], "--val-fraction"),
    (["--layout", "coco"], "--layout 'coco'"),
])
def test_bad_options_are_one_line(tmp_path, capsys, args, needle):
    from dymu_rt.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path / "x"), "--n", "2", *args])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_killed_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = writer_mod.render_index

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(writer_mod, "render_index", dying)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        write_synth_dataset(out, n=5, size=16, progress=False)
    assert list(out.iterdir()) == []  # staging removed, nothing under a final name
    monkeypatch.setattr(writer_mod, "render_index", real)
    write_synth_dataset(out, n=2, size=16, progress=False)  # an empty folder is fine
    with pytest.raises(ValidationError, match="not empty"):
        write_synth_dataset(out, n=2, size=16, progress=False)
