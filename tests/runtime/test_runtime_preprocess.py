"""Preprocessing: any image mode/size, EXIF orientation, normalization, bad files."""

import numpy as np
import pytest
from PIL import Image

from dymu_rt.core.errors import ValidationError
from dymu_rt.runtime.preprocess import collect_images, load_image, preprocess, to_rgb

SPEC = {"input_size": [16, 16], "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "normalize_in_graph": False}


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_every_mode_gives_rgb_batch(tmp_path, mode):
    if mode == "I;16":
        img = Image.frombytes("I;16", (40, 30), np.full((30, 40), 40000, "<u2").tobytes())
    elif mode in ("I", "F"):
        img = Image.fromarray(np.full((30, 40), 40000 if mode == "I" else 0.5, np.int32 if mode == "I" else np.float32))
    else:
        img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    assert img.mode == mode
    x = preprocess([img], SPEC)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32 and np.isfinite(x).all()


RAW = {"input_size": [16, 16], "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
       "normalize_in_graph": False}
ORANGE = (200, 100, 50)
GREY = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)          # ITU-R 601-2 luma: 124


@pytest.mark.parametrize("mode, want, tol", [
    ("RGB", ORANGE, 0), ("RGBA", ORANGE, 0), ("CMYK", ORANGE, 0),     # alpha dropped, CMYK round trip exact
    ("L", (GREY,) * 3, 0), ("LA", (GREY,) * 3, 0),
    ("P", ORANGE, 6),                                                  # web palette, dithered: the mean
    ("I;16", (155,) * 3, 0), ("I", (155,) * 3, 0),                     # 40000 / 257, not clipped to 255
    ("F", (127,) * 3, 0),                                              # 0.5 of a [0, 1] float image
])
def test_every_mode_gives_the_expected_colour(mode, want, tol):
    """Values, not just shapes: each mode of a flat orange (or 16-bit / float grey) image
    gives the RGB worked out here, in R, G, B order."""
    if mode == "I;16":
        img = Image.frombytes("I;16", (40, 30), np.full((30, 40), 40000, "<u2").tobytes())
    elif mode in ("I", "F"):
        img = Image.fromarray(np.full((30, 40), 40000 if mode == "I" else 0.5, np.int32 if mode == "I" else np.float32))
    else:
        img = Image.new("RGB", (40, 30), ORANGE).convert(mode)
    x = preprocess([img], RAW)[0]
    np.testing.assert_allclose(x.reshape(3, -1).mean(axis=1), want, atol=tol + 1e-3)
    if tol == 0:
        assert np.ptp(x.reshape(3, -1), axis=1).max() == 0          # flat stays flat


def test_one_bit_image_is_black_and_white_with_the_right_mean():
    img = Image.new("RGB", (64, 64), ORANGE).convert("1")            # dithered: 0 / 255 pixels
    x = preprocess([img], {**RAW, "input_size": [64, 64]})[0]
    assert set(np.unique(x).tolist()) == {0.0, 255.0}
    assert abs(float(x.mean()) - GREY) < 8


def test_sixteen_bit_is_rescaled_not_clipped():
    img = Image.frombytes("I;16", (4, 4), np.full((4, 4), 32896, "<u2").tobytes())     # half of 65535
    assert abs(int(np.asarray(to_rgb(img))[0, 0, 0]) - 128) <= 1


def test_normalization_in_or_out_of_graph():
    img = Image.new("RGB", (16, 16), (255, 0, 128))
    x = preprocess([img], SPEC)[0]
    assert np.allclose(x[:, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25], atol=1e-5)
    y = preprocess([img], {**SPEC, "normalize_in_graph": True})[0]
    assert np.allclose(y[:, 0, 0], [1, 0, 128 / 255], atol=1e-6)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))             # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6                                       # rotate 90° CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    up = load_image(path)
    assert up.size == (20, 40)                             # portrait after transpose
    a = np.asarray(up.convert("L"))
    assert a[:10].mean() > 200 and a[-10:].mean() < 50      # the band is now on top


def test_non_image_file_named(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValidationError, match="notes.png is not an image"):
        preprocess([bad], SPEC)


def test_truncated_file_named(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValidationError, match="cut.png"):
        load_image(path)


def test_collect_images(tmp_path):
    for n in ("b.png", "a.jpg", "readme.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in collect_images([tmp_path])] == ["a.jpg", "b.png"]
    with pytest.raises(ValidationError, match="not found"):
        collect_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match="holds no images"):
        collect_images([tmp_path / "empty"])
