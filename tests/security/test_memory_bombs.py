"""Memory bombs: every bomb image, under a 1 GiB address-space limit, ends with output or
a one-line error (bomb_child.py runs them in one subprocess under ``RLIMIT_AS``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from corpus import image_bombs
from dymu_rt.core.overview import GAP, MAX_ASPECT, MAX_HEIGHT, MAX_LEGEND_HEIGHT, overview_image

GIB = 2**30


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced as tested on Linux only")
def test_bomb_images_under_1gib(tmp_path):
    imgs = image_bombs(tmp_path / "img")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    p = subprocess.run([sys.executable, str(Path(__file__).with_name("bomb_child.py")), str(GIB), str(out),
                        *map(str, imgs.values())], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    rows = {Path(r["image"]).stem: r for r in map(json.loads, p.stdout.splitlines())}
    assert set(rows) == set(imgs)
    for name, row in rows.items():
        if row["outcome"] == "error":
            assert "\n" not in row["message"] and row["message"], row
    # The elongated images are small in pixels: they must give output, at a bounded size.
    for name in ("tall_5000x1", "tall_50000x1", "wide_1x50000"):
        assert rows[name]["outcome"] == "output", rows[name]
    # Bombs by pixel count are refused, naming the size.
    for name in ("bomb_header_100000sq", "bomb_header_9000sq", "bomb_12000sq"):
        assert rows[name]["outcome"] == "error" and "pixels" in rows[name]["message"], rows[name]
    for f in out.glob("*_overview.png"):
        with Image.open(f) as im:
            # + the keys under the tiles (class legend, colour bars), bounded too
            assert im.height <= 16 + MAX_HEIGHT + 8 + GAP + MAX_LEGEND_HEIGHT and im.width <= 4 * (MAX_ASPECT * MAX_HEIGHT + 8), (f, im.size)


def test_overview_size_is_bounded_whatever_the_input():
    panel = Image.new("RGB", (64, 64))
    for size in [(1, 50000), (50000, 1), (3000, 3000), (1, 1)]:
        pic = overview_image(Image.new("RGB", size), {"a": panel, "b": panel})
        assert pic.height <= MAX_HEIGHT + 16 + 8 and pic.width <= 3 * (MAX_ASPECT * MAX_HEIGHT + 4) + 4, (size, pic.size)
