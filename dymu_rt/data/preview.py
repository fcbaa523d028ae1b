"""Preview pictures of rendered scenes: image | labels side by side, one PNG per scene."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from dymu_rt.core.render import label_palette
from dymu_rt.data.synth import SceneRender


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """uint8 RGB of a label map; -1 (ignore) is drawn light gray."""
    out = label_palette()[np.clip(labels, 0, 255)]
    out[labels < 0] = (224, 224, 192)
    return out


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """uint8 RGB of a depth map (near = bright), matplotlib's magma, 0 = invalid = black."""
    from matplotlib import colormaps

    valid = depth > 0
    lo, hi = (depth[valid].min(), depth[valid].max()) if valid.any() else (0.0, 1.0)
    t = np.clip((hi - depth) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = (colormaps["magma"](t)[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """uint8 RGB of unit normals: (n + 1) / 2, zero vectors black."""
    rgb = ((normals + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
    rgb[np.linalg.norm(normals, axis=-1) < 1e-6] = 0
    return rgb


def preview_panels(r: SceneRender) -> list[tuple[str, np.ndarray]]:
    """(title, uint8 RGB) panels of one render, in the order they are drawn."""
    panels = [("image", (r.image * 255 + 0.5).astype(np.uint8)),
              ("semseg", colorize_labels(r.semseg)),
              ("depth", colorize_depth(r.depth)),
              ("normals", colorize_normals(r.normals))]
    if r.layout == "pascal":
        gray = lambda x: np.repeat((x * 255).astype(np.uint8)[..., None], 3, axis=-1)  # noqa: E731
        panels += [("human parts", colorize_labels(r.parts)), ("saliency", gray(r.saliency)),
                   ("edges", gray(r.edges))]
    return panels


def preview_image(r: SceneRender, min_height: int = 160) -> Image.Image:
    """One picture of a render: titled panels side by side, upscaled (nearest) for viewing."""
    h, w = r.depth.shape
    scale = max(1, -(-min_height // h))
    title_h, gap = 14, 4
    panels = preview_panels(r)
    pw, ph = w * scale, h * scale
    canvas = Image.new("RGB", (len(panels) * (pw + gap) - gap, ph + title_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, (title, rgb) in enumerate(panels):
        x = k * (pw + gap)
        canvas.paste(Image.fromarray(rgb).resize((pw, ph), Image.NEAREST), (x, title_h))
        draw.text((x + 2, 1), title, fill=(0, 0, 0))
    return canvas
