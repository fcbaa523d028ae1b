"""`dymu-rt run`'s outputs for a person (issue 25): maps at the input's geometry with keys,
raw outputs on request, honest latency, and no silent overwrite of a user's files.
About 4 s on 2 cores (the fixture bundle)."""

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli as _cli


@pytest.fixture
def wide_image(tmp_path):
    """A 4:3 picture (w 80, h 60), as a phone takes them; the network's input is square."""
    p = tmp_path / "room.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)).save(p)
    return p


def _run(capsys, bundle, image, out, *extra):
    return _cli(capsys, "run", "--r", "0.6,0.2,0.2", "--c", "0.5", str(image), "--bundle", str(bundle),
                "--out", str(out), *extra)


def test_maps_at_input_geometry_and_overview_keeps_aspect(capsys, bundle, wide_image, tmp_path):
    code, stdout, err = _run(capsys, bundle, wide_image, tmp_path / "o", "--json", "--iters", "0")
    assert code == 0, err
    files = json.loads(stdout)["outputs"]
    for task in ("semseg", "normals", "depth"):
        assert Image.open(files[task]).size == (80, 60), task      # the input's, not the network's square
    ov = Image.open(files["overview"])
    # input + 3 task tiles of one aspect (4:3 at the row height 128: 171 px wide each) + keys below
    assert ov.width >= 4 * 171 and ov.height > 128 + 16


def test_segmentation_map_is_resized_by_nearest_neighbour():
    from dymu_rt.core.kinds import make_output

    seg = make_output("segmentation", "semseg", num_classes=3)
    logits = np.zeros((3, 2, 2), np.float32)
    logits[0, 0, 0] = logits[1, 0, 1] = logits[2, 1, :] = 5.0
    labels = seg.at_size(logits, (4, 6))
    assert labels.shape == (4, 6) and set(np.unique(labels)) == {0, 1, 2}     # no invented label
    assert (labels[:2, :3] == 0).all() and (labels[:2, 3:] == 1).all() and (labels[2:] == 2).all()
    depth = make_output("depth", "depth")
    d = depth.at_size(np.array([[[1.0, 3.0]]], np.float32), (1, 4))
    assert d.shape == (1, 4) and d[0, 0] < d[0, 1] < d[0, 2] < d[0, 3]        # bilinear: in between
    n = make_output("normals", "normals").at_size(np.ones((3, 2, 2), np.float32) * 2, (3, 3))
    assert np.allclose(np.linalg.norm(n, axis=0), 1.0)                       # re-normalized


def test_legend_names_the_classes_of_the_label_set():
    from dymu_rt.runtime.outputs import make_tasks
    from dymu_rt.bundle.manifest import TaskEntry

    seg = make_tasks([TaskEntry("semseg", "segmentation", 13)])[0]
    assert seg.class_names[0] == "bed" and len(seg.class_names) == 13       # NYU-v2 13
    key = seg.legend(np.array([[11, 11, 4]]))
    assert key.height > 2 * 10                                                # two classes, two lines


def test_save_outputs_writes_npy_and_an_index(capsys, bundle, wide_image, tmp_path):
    raw = tmp_path / "raw"
    code, stdout, err = _run(capsys, bundle, wide_image, tmp_path / "o", "--json", "--iters", "0",
                             "--save-outputs", str(raw))
    assert code == 0, err
    model_hw = tuple(json.loads((bundle / "manifest.json").read_text())["preprocessing"]["input_size"])
    index = json.loads((raw / "outputs.json").read_text())
    by = {(f["task"], f["resolution"]): f for f in index["files"]}
    assert set(by) == {(t, res) for t in ("semseg", "normals", "depth") for res in ("model", "input")}
    for (task, res), f in by.items():
        a = np.load(raw / f["file"], allow_pickle=False)
        assert a.dtype == np.float32 and list(a.shape) == f["shape"]
        assert a.shape[1:] == (model_hw if res == "model" else (60, 80))
    n_cls = next(t["out_channels"] for t in json.loads((bundle / "manifest.json").read_text())["tasks"]
                 if t["name"] == "semseg")
    assert by[("semseg", "model")]["shape"][0] == n_cls and "logits" in by[("semseg", "model")]["meaning"]


def test_latency_has_a_cold_call_and_no_percentile_from_too_few_runs(capsys, bundle, wide_image, tmp_path):
    code, stdout, err = _run(capsys, bundle, wide_image, tmp_path / "o", "--json", "--iters", "3", "--warmup", "1")
    assert code == 0, err
    lat = json.loads(stdout)["latency_ms"]
    assert lat["cold_ms"] > 0 and lat["count"] == 3
    assert lat["p50_ms"] is None and lat["p90_ms"] is None and lat["p99_ms"] is None
    code, stdout, err = _run(capsys, bundle, wide_image, tmp_path / "o", "--iters", "12", "--warmup", "1")
    assert code == 0, err
    assert "first call (cold)" in stdout and "12 runs after 1 warm-up" in stdout
    line = next(l for l in stdout.splitlines() if "p50 / p90 / p99" in l)
    assert "/ - ms" in line                                       # p99 needs 100 runs


def test_out_refuses_to_overwrite_a_users_file(capsys, bundle, wide_image, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    mine = out / "room_depth.png"
    mine.write_bytes(b"my own picture")
    code, _, err = _run(capsys, bundle, wide_image, out, "--iters", "0")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --out") and "room_depth.png already exists" in err and "--overwrite" in err
    assert mine.read_bytes() == b"my own picture" and sorted(p.name for p in out.iterdir()) == ["room_depth.png"]
    code, _, err = _run(capsys, bundle, wide_image, out, "--iters", "0", "--overwrite")
    assert code == 0, err and Image.open(mine).size == (80, 60)


def test_a_folder_dymu_rt_wrote_is_rewritten(capsys, bundle, wide_image, tmp_path):
    out = tmp_path / "o"
    for _ in range(2):
        code, _, err = _run(capsys, bundle, wide_image, out, "--iters", "0")
        assert code == 0, err
    assert (out / ".dymu-rt-outputs").is_file()


def test_preference_is_printed_exactly(capsys, bundle, wide_image, tmp_path):
    code, stdout, err = _cli(capsys, "run", "--r", "0.3333333333333333,0.3333333333333333,0.3333333333333334",
                             "--c", "0", str(wide_image), "--bundle", str(bundle), "--out", str(tmp_path / "o"),
                             "--iters", "0")
    assert code == 0, err
    assert "r=uniform (1/3 each)" in stdout and "0.3,0.3,0.3" not in stdout


def test_outputs_of_a_huge_input_keep_its_aspect_at_a_bounded_size():
    from dymu_rt.runtime.outputs import MAX_OUTPUT_PIXELS, output_size

    assert output_size(60, 80) == (60, 80)
    h, w = output_size(6000, 8000)                      # 48 Mpx: a float32 map per task would be GiBs
    assert h * w <= MAX_OUTPUT_PIXELS and abs(w / h - 8000 / 6000) < 0.01


def test_default_timing_shrinks_for_a_slow_model_but_keeps_a_p50():
    from dymu_rt.app.run_images import auto_counts

    assert auto_counts(1.4, None, None) == (10, 100)           # the shipped model: every percentile
    assert auto_counts(870.0, None, None) == (1, 5)            # a paper-scale model: ~5 s, still a p50
    assert auto_counts(870.0, 3, 50) == (3, 50)                 # asked for: as asked
