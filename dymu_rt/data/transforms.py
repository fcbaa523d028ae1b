"""Geometric transforms applied consistently to an image and all its dense targets.

Each transform takes and returns a contract sample (:mod:`dymu_rt.data.base`), looking up
how to treat each target by its task kind:

* image: bilinear (antialiased when shrinking);
* segmentation, parts, saliency, edges and every mask: nearest neighbour, so labels stay
  labels and ignored pixels stay ignored;
* depth and normals: bilinear over *valid pixels only* (normalized convolution), so
  invalid zeros never bleed into valid values; normals are renormalized to unit length.

Padding fills the image with 0, labels with -1 and masks with False. A horizontal flip
negates the x component of normals (camera x points right). Zooming in by a factor s
divides depth by s, as MTAN's RandomScaleCrop does: the scene looks s times closer.
Classification targets (scalars) pass through untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from dymu_rt.core.kinds import LABEL_MAP_KINDS, NEAREST_RESIZE_KINDS
from dymu_rt.core.labels import DENSE_TASK_KINDS

if TYPE_CHECKING:  # annotations only: data.base imports this module for its transforms
    from dymu_rt.data.base import Sample

_LABEL_KINDS = LABEL_MAP_KINDS
_NEAREST_KINDS = NEAREST_RESIZE_KINDS


def _kind(name: str, t: torch.Tensor) -> str:
    return "classification" if t.dim() == 0 else DENSE_TASK_KINDS.get(name, "segmentation")


def _nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an (H, W) or (C, H, W) tensor of any dtype."""
    dtype = x.dtype
    y = x.float()
    y = F.interpolate(y[None] if y.dim() == 3 else y[None, None], size=size, mode="nearest-exact")
    y = y[0] if x.dim() == 3 else y[0, 0]
    return y.to(dtype) if dtype != torch.bool else y > 0.5


def _valid_bilinear(x: torch.Tensor, valid: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear resize of (C, H, W) ``x`` using only pixels where ``valid``; returns (x, weight)."""
    w = valid.float()[None, None]
    num = F.interpolate((x * w[0])[None], size=size, mode="bilinear", align_corners=False)[0]
    den = F.interpolate(w, size=size, mode="bilinear", align_corners=False)[0]
    return num / den.clamp_min(1e-6), den[0]


def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize the image and every dense target/mask to ``size`` (H, W)."""
    size = (int(size[0]), int(size[1]))
    img = sample["image"]
    shrink = size[0] < img.shape[-2] or size[1] < img.shape[-1]
    out_img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False,
                            antialias=shrink)[0].clamp_(0.0, 1.0)
    targets, masks = {}, {}
    for name, t in sample["targets"].items():
        m = sample["masks"][name]
        kind = _kind(name, t)
        if kind == "classification":
            targets[name], masks[name] = t, m
            continue
        new_m = _nearest(m, size)
        if kind in _NEAREST_KINDS:
            targets[name] = _nearest(t, size)
        else:
            val, weight = _valid_bilinear(t, m, size)
            new_m &= weight > 1e-3
            if kind == "normals":
                norm = val.norm(dim=0)
                new_m &= norm > 1e-6
                val = val / norm.clamp_min(1e-6)
            targets[name] = val * new_m
        masks[name] = new_m
    return {**sample, "image": out_img, "targets": targets, "masks": masks}


def hflip_sample(sample: Sample) -> Sample:
    """Mirror left-right; normals' x component changes sign."""
    targets, masks = {}, {}
    for name, t in sample["targets"].items():
        if _kind(name, t) == "classification":
            targets[name], masks[name] = t, sample["masks"][name]
            continue
        f = t.flip(-1)
        if _kind(name, t) == "normals":
            f = f.clone()
            f[0] = -f[0]
        targets[name] = f
        masks[name] = sample["masks"][name].flip(-1)
    return {**sample, "image": sample["image"].flip(-1), "targets": targets, "masks": masks}


def pad_crop_sample(sample: Sample, size: tuple[int, int], top: int, left: int) -> Sample:
    """Crop the window of ``size`` at (top, left); negative offsets / overhang are padded."""
    h, w = sample["image"].shape[-2:]
    ph, pw = size

    def window(x: torch.Tensor, fill) -> torch.Tensor:
        out = torch.full((*x.shape[:-2], ph, pw), fill, dtype=x.dtype)
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(h, top + ph), min(w, left + pw)
        if y1 > y0 and x1 > x0:
            out[..., y0 - top:y1 - top, x0 - left:x1 - left] = x[..., y0:y1, x0:x1]
        return out

    targets, masks = {}, {}
    for name, t in sample["targets"].items():
        kind = _kind(name, t)
        if kind == "classification":
            targets[name], masks[name] = t, sample["masks"][name]
            continue
        targets[name] = window(t, -1 if kind in _LABEL_KINDS else 0)
        masks[name] = window(sample["masks"][name], False)
    return {**sample, "image": window(sample["image"], 0.0), "targets": targets, "masks": masks}


def scale_depth(sample: Sample, factor: float) -> Sample:
    """Divide depth targets by ``factor`` (zooming in by ``factor``)."""
    targets = dict(sample["targets"])
    for name, t in targets.items():
        if _kind(name, t) == "depth":
            targets[name] = t / factor
    return {**sample, "targets": targets}


class DenseAugment:
    """Random scale, pad-and-crop back to the input size, and horizontal flip.

    ``scale=(lo, hi)``: the sample is resized by s ~ U(lo, hi) (s > 1 zooms in, depth / s),
    then a window of the original size is cropped at random, padding where s < 1;
    ``pad`` extra pixels of random translation (CIFAR-style crop). Randomness comes from
    ``generator`` or torch's global RNG (so a trainer's seeded, checkpointed RNG state
    reproduces it).
    """

    def __init__(self, flip: bool = True, scale: Optional[tuple[float, float]] = (1.0, 1.25),
                 pad: int = 0, generator: Optional[torch.Generator] = None):
        self.flip, self.scale, self.pad, self.generator = flip, scale, int(pad), generator

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def __call__(self, sample: Sample) -> Sample:
        h, w = sample["image"].shape[-2:]
        if self.scale is not None and self.scale != (1.0, 1.0):
            s = self.scale[0] + (self.scale[1] - self.scale[0]) * self._rand()
            sh, sw = max(1, round(h * s)), max(1, round(w * s))
            if (sh, sw) != (h, w):
                sample = scale_depth(resize_sample(sample, (sh, sw)), s)
        sh, sw = sample["image"].shape[-2:]
        lo_y, hi_y = min(0, sh - h) - self.pad, max(0, sh - h) + self.pad
        lo_x, hi_x = min(0, sw - w) - self.pad, max(0, sw - w) + self.pad
        top = lo_y + int(self._rand() * (hi_y - lo_y + 1))
        left = lo_x + int(self._rand() * (hi_x - lo_x + 1))
        if (top, left, sh, sw) != (0, 0, h, w):
            sample = pad_crop_sample(sample, (h, w), min(top, hi_y), min(left, hi_x))
        if self.flip and self._rand() < 0.5:
            sample = hflip_sample(sample)
        return sample
