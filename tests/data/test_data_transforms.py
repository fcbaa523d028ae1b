"""Dense augmentation: image, targets and masks move together; normals and depth stay true."""

import torch

from dymu_rt.data.base import dense_sample
from dymu_rt.data.synth import SynthDataset
from dymu_rt.data.transforms import (DenseAugment, hflip_sample, pad_crop_sample, resize_sample,
                                     scale_depth)

torch.set_num_threads(1)
TASKS = ("semseg", "normals", "depth", "saliency", "edges", "human_parts")


def coded_sample(h=32, w=40):
    """A sample whose labels are functions of the image (8x8 blocks), so any mismatch shows."""
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    code = ((yy // 8) * 5 + xx // 8 * 3) % 13
    image = np.stack([code / 12.0, code / 12.0, code / 12.0], axis=-1).astype(np.float32)
    n = np.stack([np.full((h, w), 0.6), np.zeros((h, w)), np.full((h, w), -0.8)], axis=-1)
    targets = {"semseg": code, "human_parts": code % 7, "depth": 1.0 + code.astype(np.float32),
               "normals": n, "saliency": (code > 6).astype(np.float32),
               "edges": (code == 0).astype(np.float32)}
    masks = {t: np.ones((h, w), bool) for t in TASKS}
    masks["depth"] = code != 5
    return dense_sample(image, targets, masks)


def interior(img: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one image value (bilinear leaves them exact)."""
    x = img[0]
    p = torch.nn.functional.pad(x[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    same = torch.ones_like(x, dtype=torch.bool)
    for dy in range(3):
        for dx in range(3):
            same &= p[dy:dy + x.shape[0], dx:dx + x.shape[1]] == x
    return same


def check_consistent(s):
    code = torch.round(s["image"][0] * 12).long()
    m = s["masks"]["semseg"] & interior(s["image"])
    assert m.sum() > 10
    assert torch.equal(s["targets"]["semseg"][m], code[m])
    assert torch.equal(s["targets"]["human_parts"][m], code[m] % 7)
    assert torch.equal(s["targets"]["edges"][0][m], (code[m] == 0).float())
    assert torch.equal(s["masks"]["depth"][m], code[m] != 5)
    assert torch.allclose(s["targets"]["depth"][0][m & (code != 5)],
                          (1.0 + code[m & (code != 5)].float()) / s.get("zoom", 1.0))
    return code


def test_hflip_negates_normal_x_and_moves_everything():
    s = coded_sample()
    f = hflip_sample(s)
    check_consistent(f)
    assert torch.equal(f["targets"]["semseg"], s["targets"]["semseg"].flip(-1))
    assert torch.allclose(f["targets"]["normals"][0], torch.full((32, 40), -0.6))
    assert torch.allclose(f["targets"]["normals"][2], torch.full((32, 40), -0.8))
    assert torch.equal(hflip_sample(f)["targets"]["normals"], s["targets"]["normals"])


def test_pad_crop_fills_ignore():
    s = pad_crop_sample(coded_sample(), (32, 40), top=-2, left=3)
    assert (s["targets"]["semseg"][:2] == -1).all() and not s["masks"]["semseg"][:2].any()
    assert (s["targets"]["semseg"][:, 37:] == -1).all() and (s["image"][:, :2] == 0).all()
    valid = s["masks"]["semseg"]
    code = torch.round(s["image"][0] * 12).long()
    assert torch.equal(s["targets"]["semseg"][valid], code[valid])
    assert not s["masks"]["depth"][:2].any() and (s["targets"]["depth"][0, :2] == 0).all()


def test_resize_nearest_labels_and_valid_only_depth():
    s = resize_sample(coded_sample(), (64, 80))
    check_consistent(s)
    assert s["targets"]["semseg"].dtype == torch.int64
    # Upsampling x2: every output pixel of a valid input pixel keeps its depth exactly
    # (bilinear between valid neighbours only; no blending with invalid zeros).
    d, m = s["targets"]["depth"][0], s["masks"]["depth"]
    assert (d[m] >= 1.0).all() and (d[~m] == 0).all()
    n = s["targets"]["normals"]
    assert torch.allclose(n.norm(dim=0), torch.ones(64, 80))


def test_random_augment_is_consistent_and_scales_depth():
    torch.manual_seed(0)
    aug = DenseAugment(flip=True, scale=(0.7, 1.5), pad=2)
    for _ in range(10):
        s = aug(coded_sample())
        assert s["image"].shape == (3, 32, 40) and s["targets"]["normals"].shape == (3, 32, 40)
        m = s["masks"]["semseg"]
        assert (s["targets"]["semseg"][~m] == -1).all()
        # Depth is divided by the zoom factor: recover it from a valid interior pixel.
        code = torch.round(s["image"][0] * 12).long()
        ok = m & interior(s["image"]) & (code != 5)
        k = ok.nonzero()[0]
        s["zoom"] = float((1.0 + code[k[0], k[1]]) / s["targets"]["depth"][0, k[0], k[1]])
        assert 0.7 - 1e-4 <= s["zoom"] <= 1.5 + 1e-4
        check_consistent(s)
    z = scale_depth(coded_sample(), 2.0)
    assert torch.allclose(z["targets"]["depth"], coded_sample()["targets"]["depth"] / 2)


def test_synth_augmented_samples_vary_but_cache_stays_clean():
    ds = SynthDataset(2, (24, 24), augment=DenseAugment(flip=True, scale=(1.0, 1.5)))
    torch.manual_seed(1)
    a = [ds[0]["image"] for _ in range(4)]
    assert any(not torch.equal(a[0], x) for x in a[1:])
    plain = SynthDataset(2, (24, 24))[0]
    assert torch.equal(ds._cache[0]["image"], plain["image"])
