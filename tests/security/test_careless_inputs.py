"""Careless inputs: each is one ``error:`` line, never a traceback, a hang or a surprise."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from cli_helpers import run_cli
from dymu_rt.core.errors import CheckpointError, DymuError, ValidationError
from dymu_rt.runtime.preprocess import MAX_INPUT_PIXELS, check_input_size, collect_images
from dymu_rt.core.io import read_json


def _one_line(code, err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return code != 0 and len(lines) == 1 and lines[0].startswith("error: ")


def test_empty_image_argument_is_not_the_current_folder(good_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "holiday.png").write_bytes(b"not read")
    code, _, err = run_cli(capsys, "run", "", "--r", "1,0,0", "--c", "0.5", "--bundle", str(good_bundle),
                           "--out", str(tmp_path / "o"))
    assert _one_line(code, err) and "empty" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_named_as_such_and_never_opened(tmp_path):
    fifo = tmp_path / "cam.png"
    os.mkfifo(fifo)
    with pytest.raises(ValidationError, match="not a regular file"):
        collect_images([str(fifo)])      # opening it would block forever


def test_folder_listing_skips_fifos(tmp_path):
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "a.png")
    with pytest.raises(ValidationError, match="holds no images"):
        collect_images([str(tmp_path)])


@pytest.mark.parametrize("r, flags", [("1e308,1e308,0", ()), ("1e308,1e308,0", ("--normalize",)),
                                      ("1" + "0" * 400 + "/3,0,0", ()), ("inf,0,0", ())])
def test_preference_overflow_is_one_line_or_works(r, flags, good_bundle, good_image, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", str(good_image), "--r", r, "--c", "0.5", *flags,
                           "--bundle", str(good_bundle), "--out", str(tmp_path / "o"))
    assert "Traceback" not in err
    if flags:
        assert code == 0, err             # 1e308,1e308,0 normalized is 0.5,0.5,0
    else:
        assert _one_line(code, err), err


@pytest.mark.parametrize("size", [[60000, 60000], [0, 64], [64], "64x64", [True, 64], [64.0, 64]])
def test_input_size_is_bounded(size):
    with pytest.raises(ValidationError, match="input_size"):
        check_input_size({"input_size": size})
    assert check_input_size({"input_size": [512, 512]}) == (512, 512)
    assert MAX_INPUT_PIXELS < 60000 ** 2


@pytest.mark.parametrize("batch", ["1000000", "0", "-3", "9"])
def test_profile_batch_is_bounded(batch, good_bundle, capsys):
    code, _, err = run_cli(capsys, "profile", "--bundle", str(good_bundle), "--batch", batch, "--iters", "1")
    assert _one_line(code, err) and "batch" in err, err


@pytest.mark.parametrize("stages", ["x", [], {"anchor": 1}, {"anchor": {"done": "yes"}}])
def test_run_config_with_wrong_typed_stages(stages, tmp_path):
    from dymu_rt.run.layout import RunDir

    (tmp_path / "config.json").write_text(json.dumps({"kind": "dymu-rt-run", "preset": {}, "stages": stages}))
    with pytest.raises(CheckpointError, match="stages"):
        RunDir(tmp_path).read_config()


def test_deeply_nested_json_is_one_error(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DymuError, match="nested too deeply"):
        read_json(p, "run config")


@pytest.mark.parametrize("cmd", ["build", "eval"])
@pytest.mark.parametrize("step", ["1e-6", "0.001"])
def test_grid_explosion_is_refused_before_any_work(cmd, step, tmp_path, capsys, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))
    from run_fixture import make_tiny_run

    run = make_tiny_run(tmp_path / "run")
    argv = ["build", str(run), "--grid", step, "--out", str(tmp_path / "b")] if cmd == "build" else \
        ["eval", str(run), "--grid", step]
    # "Before any work": enumerating the grid (what would take hours and gigabytes) must not
    # start; checked by making it impossible instead of timing it.
    from dymu_rt.core import preference

    def no_work(*a, **k):
        raise AssertionError("the grid was enumerated before it was refused")

    monkeypatch.setattr(preference, "grid_r", no_work)
    monkeypatch.setattr(preference, "grid_c", no_work)
    code, _, err = run_cli(capsys, *argv)
    assert _one_line(code, err) and "preference points" in err and "limit" in err, err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
    shutil.rmtree(run)
