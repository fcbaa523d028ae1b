"""Evaluation pictures: files are PNGs written atomically; content reflects the input."""

import numpy as np
import pytest
from PIL import Image

from dymu_rt.core.preference import grid
from dymu_rt.evaluate.plots import plot_controllability, plot_resource_usage, plot_tree, plot_trees

NAMES = ["semseg", "normals", "depth"]


def _png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*.tmp"))                # atomic: no temporary left behind
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _red_pixels(img):
    return int(((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)).sum())


def test_ternary_resource_map(tmp_path):
    pts = [(p.r, p.c, 3.0 - 2.0 * p.c * (1 - sum(v * v for v in p.r))) for p in grid(3, "0.1", "0.5")]
    img = _png(plot_resource_usage(pts, tmp_path / "map.png", NAMES))
    assert img.shape[1] > img.shape[0]                          # three panels side by side
    # Constant values and a c with too few points for a triangulation still draw.
    _png(plot_resource_usage([(p.r, p.c, 1.0) for p in grid(3, "0.5")], tmp_path / "flat.png"))
    _png(plot_resource_usage([((1, 0, 0), 0.0, 1.0), ((0, 1, 0), 0.0, 2.0)], tmp_path / "two.png"))


@pytest.mark.parametrize("n", [2, 4])
def test_resource_map_fallbacks(tmp_path, n):
    pts = [(p.r, p.c, 1 - p.c * max(p.r)) for p in grid(n, "0.5")]
    _png(plot_resource_usage(pts, tmp_path / f"map{n}.png"))
    with pytest.raises(ValueError, match="task names"):
        plot_resource_usage(pts, tmp_path / "bad.png", task_names=["x"])


def test_tree_diagram_highlights_cross_task_edges(tmp_path):
    identity = np.tile(np.arange(3), (5, 1))
    shared = np.array([[0, 1, 2], [0, 0, 2], [0, 0, 2], [0, 0, 1], [0, 1, 2]])
    plain = _png(plot_tree(identity, tmp_path / "identity.png", NAMES, title="identity"))
    branched = _png(plot_tree(shared, tmp_path / "shared.png", NAMES, title="shared"))
    # The legend holds one short red line in both; the branched tree adds red edges.
    assert _red_pixels(branched) > _red_pixels(plain) + 100
    _png(plot_trees([("a", identity), ("b", shared), ("c", shared)], tmp_path / "three.png", NAMES))


def test_controllability_curves(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(r, c, 1 / (0.3 + r)) for c in (0.0, 1.0) for r in rng.dirichlet(np.ones(3), 8)]
    _png(plot_controllability(rows, tmp_path / "ctrl.png", NAMES))
    with pytest.raises(ValueError, match="one loss per task"):
        plot_controllability([((0.5, 0.5), 0.0, (1.0,))], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_ternary_map_fills_its_maximum(tmp_path):
    # Regression: tricontourf left the region at the map's maximum unfilled (white). Swapping
    # which region holds the maximum must not change how much of the picture is white.
    pts = grid(3, "0.05", "1")
    a = _png(plot_resource_usage([(p.r, p.c, 2.0 if p.r[0] > 0.5 else 1.0) for p in pts], tmp_path / "a.png"))
    b = _png(plot_resource_usage([(p.r, p.c, 1.0 if p.r[0] > 0.5 else 2.0) for p in pts], tmp_path / "b.png"))
    white = lambda img: int((img.min(axis=-1) >= 250).sum())  # noqa: E731
    assert a.shape == b.shape
    assert abs(white(a) - white(b)) < 0.005 * a.shape[0] * a.shape[1]
