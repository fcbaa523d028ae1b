"""Pictures: every kind gives a uint8 RGB image of the output's size; the overview tiles them."""

import numpy as np
import pytest
from PIL import Image

from dymu_rt.core.errors import ValidationError
from dymu_rt.core.overview import overview_image
from dymu_rt.tasks import make_task
from dymu_rt.core.render import label_palette

H, W = 12, 20


def _raw(task, rng):
    shape = (task.out_channels,) if task.kind == "classification" else (task.out_channels, H, W)
    return rng.standard_normal(shape).astype(np.float32) + (2.0 if task.kind == "depth" else 0.0)


@pytest.mark.parametrize("kind,num_classes", [("segmentation", 13), ("parts", 7), ("depth", None),
                                              ("normals", None), ("saliency", None), ("edges", None)])
def test_dense_pictures_are_rgb_of_the_output_size(kind, num_classes):
    task = make_task(kind, kind, num_classes=num_classes)
    img = task.visualize(task.postprocess(_raw(task, np.random.default_rng(0))))
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (W, H)
    a = np.asarray(img)
    assert a.dtype == np.uint8 and a.std() > 0     # not a blank picture


def test_label_palette_is_fixed_and_distinct():
    pal = label_palette(256)
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0] and pal[15].tolist() == [192, 128, 128]  # VOC "person"
    assert len({tuple(c) for c in pal}) == 256
    task = make_task("segmentation", "seg", num_classes=3)
    img = np.asarray(task.visualize(np.array([[0, 1, 2, -1]])))
    assert img[0, :3].tolist() == pal[:3].tolist() and img[0, 3].tolist() == [224, 224, 192]


def test_overview_tiles_input_and_panels_with_labels():
    rng = np.random.default_rng(0)
    image = rng.random((H, W, 3))
    seg = make_task("segmentation", "semseg", num_classes=5)
    cls = make_task("classification", "fish", num_classes=5)
    panels = {"semseg": seg.visualize(seg.postprocess(_raw(seg, rng))),
              "fish": cls.visualize(cls.postprocess(_raw(cls, rng)))}
    out = overview_image(image, panels, min_height=64)
    assert out.mode == "RGB"
    # Heights are scaled to 64; widths keep aspect ratios: 64*20/12 = 107, 64*160/120 = 85.
    assert out.size == (4 + 107 + 4 + 107 + 4 + 85 + 4, 4 + 16 + 64 + 4)
    a = np.asarray(out)
    assert not (a[20:84, 4:111] == 255).all()          # the input tile was pasted
    grid = overview_image(Image.fromarray((image * 255).astype(np.uint8)), panels, columns=2, min_height=64)
    assert grid.height == 4 + 2 * (16 + 64 + 4)
    with pytest.raises(ValidationError, match="expected \\[H, W, 3\\]"):
        overview_image(np.zeros((3, H, W)), panels)


@pytest.mark.parametrize("cmap", ["viridis", "magma", "plasma", "inferno", "cividis", "turbo", "gray"])
def test_bundled_colormaps_are_matplotlibs(cmap):
    """The torch/matplotlib-free colormap tables give matplotlib's exact colors."""
    from matplotlib import colormaps as mpl

    from dymu_rt.core.render import colorize

    v = np.random.default_rng(0).random((40, 50)).astype(np.float32) * 3.0
    v[0, :4] = [0.0, 3.0, -1.0, np.nan]
    t = np.clip((np.nan_to_num(v, nan=0.0) - 0.0) / 3.0, 0.0, 1.0)
    want = (mpl[cmap](t)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    assert np.array_equal(colorize(v, cmap, 0.0, 3.0), want)


def test_unknown_colormap_is_one_line():
    from dymu_rt.core.errors import ValidationError
    from dymu_rt.core.render import colorize

    with pytest.raises(ValidationError, match="colormap 'jet' is unknown; expected one of viridis"):
        colorize(np.zeros((2, 2)), "jet", 0.0, 1.0)
