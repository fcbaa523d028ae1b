"""`dymu-rt run`'s pictures are the inference's outputs (issue 28, problem 2).

The reference is computed here from ``Runtime.infer`` on the same image at the same
preference: the VOC palette applied to the argmax over the segmentation logits (the palette
written out below, not the library's), (n/|n| + 1)/2 for normals, and the depth picture's
colours ordered like the depths. Cost: ~2 s.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cli_helpers import run_cli
from dymu_rt.runtime import Runtime


def _voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette (the devkit's bit-interleaving), written out independently."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, rgb = i, [0, 0, 0]
        for j in range(8):
            for k in range(3):
                rgb[k] |= ((c >> k) & 1) << (7 - j)
            c >>= 3
        pal[i] = rgb
    return pal


def test_run_pictures_are_the_inference_outputs(capsys, bundle, tmp_path):
    rng = np.random.default_rng(5)
    img_path = tmp_path / "scene.png"
    # At the model's input size, so the pictures (drawn at the input's geometry since issue 25)
    # map pixel for pixel onto the raw outputs.
    h, w = json.loads((bundle / "manifest.json").read_text())["preprocessing"]["input_size"]
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(img_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "run", "--r", "0.5,0.3,0.2", "--c", "0.4", str(img_path),
                                "--bundle", str(bundle), "--out", str(out), "--json")
    assert code == 0, err
    files = json.loads(stdout)["outputs"]

    rt = Runtime.open(bundle, cache_engines=False)
    rt.set_preference([0.5, 0.3, 0.2], 0.4)
    raw = {k: v[0] for k, v in rt.infer([Image.open(img_path)]).items()}
    kinds = {t.name: t.kind for t in rt.tasks}
    assert sorted(kinds.values()) == ["depth", "normals", "segmentation"]
    for name, kind in kinds.items():
        pic = np.asarray(Image.open(files[name]).convert("RGB"))
        h, w = raw[name].shape[-2:]
        assert pic.shape == (h, w, 3), name
        if kind == "segmentation":
            labels = raw[name].argmax(axis=0)
            assert len(np.unique(labels)) > 1          # a picture that can tell channel orders apart
            np.testing.assert_array_equal(pic, _voc_palette()[labels])
        elif kind == "normals":
            v = raw[name]
            n = v / np.linalg.norm(v, axis=0, keepdims=True)
            want = np.clip((n.transpose(1, 2, 0) + 1) / 2 * 255 + 0.5, 0, 255).astype(np.uint8)
            assert np.abs(pic.astype(int) - want.astype(int)).max() <= 1
        else:
            d = raw[name][0]
            valid = d > 0                              # <= 0 m: clipped, drawn as invalid
            assert valid.sum() >= 8 and np.ptp(d[valid]) > 0
            invalid = pic[~valid]
            assert (invalid == invalid[0]).all()       # one "no depth" colour
            # viridis gets brighter with the value: the nearest pixel is the darkest, the
            # farthest the brightest, and brightness rises with depth.
            lum = pic.astype(float) @ np.array([0.299, 0.587, 0.114])
            ordered = lum[valid][np.argsort(d[valid], kind="stable")]
            assert (np.diff(ordered) >= -2).all() and (invalid != pic[valid][0]).any()
            assert lum.flat[np.argmin(np.where(valid, d, np.inf))] < lum.flat[np.argmax(d)] - 100
