"""Procedural multi-task scenes: a vectorized numpy ray caster and the in-memory dataset.

:func:`render` casts one ray per pixel centre through a pinhole camera into a
:class:`~dymu_rt.data.scene.Scene` and returns every label from the *same* hit record,
so the labels agree with each other and with the image exactly:

* ``image``: RGB float in [0, 1]: per-class albedo x texture (two sinusoids, a checker
  on floors, a little pixel noise) x (ambient + Lambert from one point light, with
  shadows cast by objects), gamma 2.2.
* ``depth``: z-distance in the camera frame, metres (never 0: the room is closed).
* ``normals``: unit surface normal in the camera frame, facing the camera.
  **Camera frame: x right, y down, z forward** (OpenCV); a surface seen head-on has
  normal (0, 0, -1), the floor seen from above has a negative y component.
* ``instance``: surface id (room faces 0..5, then pictures/windows and objects), and
  ``semseg`` = class of the instance in the chosen layout (see the table in
  :mod:`dymu_rt.data.scene`), ``saliency`` = 1 on objects, 0 on the room,
  ``edges`` = 1-px boundaries of the instance map (:func:`dymu_rt.data.edges.label_edges`),
  ``parts`` = human-part id (0 = background everywhere but on people).

Images are deterministic per (seed, split, index): image i is the same whatever the
dataset length, and the train and val splits draw from disjoint seed streams.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from dymu_rt.data import raycast
from dymu_rt.data.base import DenseDataset, Sample, check_tasks, dense_sample, parse_size
from dymu_rt.core.labels import NYU_TASKS, PASCAL_TASKS
from dymu_rt.data.edges import label_edges
from dymu_rt.data.scene import KIND_CLASSES, LAYOUTS, Scene, sample_scene
from dymu_rt.core.errors import ValidationError

SPLITS = {"train": 0, "val": 1}
SYNTH_TASKS = {"nyuv2": NYU_TASKS, "pascal": PASCAL_TASKS + ("depth",)}


@dataclasses.dataclass
class SceneRender:
    """All per-pixel outputs of one rendered scene (numpy, (H, W[, C]))."""

    image: np.ndarray       # float32 (H, W, 3) in [0, 1]
    depth: np.ndarray       # float32 (H, W) metres
    normals: np.ndarray     # float32 (H, W, 3) unit, camera frame
    instance: np.ndarray    # int32 (H, W)
    semseg: np.ndarray      # int64 (H, W) class ids of ``layout``
    saliency: np.ndarray    # float32 (H, W) in {0, 1}
    edges: np.ndarray       # float32 (H, W) in {0, 1}
    parts: np.ndarray       # int64 (H, W) human-part ids, 0 = background
    layout: str
    class_of_instance: np.ndarray  # int64 (num_surfaces,) semseg id of each instance

    def targets(self, tasks: Sequence[str]) -> tuple[dict, dict]:
        """(targets, masks) as numpy for the requested tasks.

        Human parts follow ASTMT: an image with no person is ignored entirely (mask False).
        """
        full = np.ones(self.depth.shape, dtype=bool)
        has_person = bool((self.parts > 0).any())
        table = {
            "semseg": (self.semseg, full), "depth": (self.depth, full),
            "normals": (self.normals, full), "saliency": (self.saliency, full),
            "edges": (self.edges, full),
            "human_parts": (self.parts if has_person else np.full_like(self.parts, -1),
                            full if has_person else ~full),
        }
        return ({t: table[t][0] for t in tasks}, {t: table[t][1] for t in tasks})


def camera_rays(scene: Scene, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray directions (H*W, 3) with z = 1, and the same in world frame."""
    h, w = size
    f = scene.focal(w)
    u = (np.arange(w) + 0.5 - w / 2) / f
    v = (np.arange(h) + 0.5 - h / 2) / f
    uu, vv = np.meshgrid(u, v)
    d_cam = np.stack([uu.ravel(), vv.ravel(), np.ones(h * w)], axis=-1)
    return d_cam, d_cam @ scene.cam_rot.T


def _hit(prim, o, d) -> np.ndarray:
    if prim.shape == "sphere":
        return raycast.hit_sphere(o, d, prim.center, prim.size[0])
    if prim.shape == "box":
        return raycast.hit_box(o, d, prim.center, prim.size, prim.yaw)
    return raycast.hit_cylinder(o, d, prim.center[[0, 2]], *prim.size)


def _normal(prim, p) -> np.ndarray:
    if prim.shape == "sphere":
        return raycast.sphere_normal(p, prim.center)
    if prim.shape == "box":
        return raycast.box_normal(p, prim.center, prim.size, prim.yaw)
    return raycast.cylinder_normal(p, prim.center[[0, 2]], *prim.size)


def _screen_window(scene: Scene, prim, size) -> Optional[np.ndarray]:
    """Flat indices of the pixels whose rays can hit ``prim`` (None = all pixels).

    The primitive's bounding sphere, in camera coordinates, spans X in [x-r, x+r] and Z in
    [z-r, z+r]; X/Z is monotonic in each, so its extremes over the box corners bound the
    projection. A one-pixel margin absorbs rounding.
    """
    h, w = size
    c, r = prim.bounding_sphere()
    pc = scene.cam_rot.T @ (c - scene.cam_pos)
    if pc[2] - r <= 1e-3:
        return None
    f = scene.focal(w)
    zs = (pc[2] - r, pc[2] + r)
    xs = [(pc[0] + sx) / z for sx in (-r, r) for z in zs]
    ys = [(pc[1] + sy) / z for sy in (-r, r) for z in zs]
    c0 = max(0, int(np.floor(f * min(xs) + w / 2 - 0.5)) - 1)
    c1 = min(w, int(np.ceil(f * max(xs) + w / 2 - 0.5)) + 2)
    r0 = max(0, int(np.floor(f * min(ys) + h / 2 - 0.5)) - 1)
    r1 = min(h, int(np.ceil(f * max(ys) + h / 2 - 0.5)) + 2)
    if c1 <= c0 or r1 <= r0:
        return np.zeros(0, dtype=np.int64)
    return (np.arange(r0, r1)[:, None] * w + np.arange(c0, c1)[None, :]).ravel()


def render(scene: Scene, size: tuple[int, int], layout: str = "nyuv2",
           rng: Optional[np.random.Generator] = None) -> SceneRender:
    """Ray-cast ``scene`` at ``size`` (H, W); ``rng`` adds pixel noise to the image."""
    h, w = size
    d_cam, d = camera_rays(scene, size)
    o = scene.cam_pos

    # Primary rays: nearest of the room and every primitive.
    t, face = raycast.hit_room(o, d, scene.room_lo, scene.room_hi)
    prim_idx = np.full(t.shape, -1, dtype=np.int64)
    for k, prim in enumerate(scene.primitives):
        idx = _screen_window(scene, prim, size)
        sub_t = t if idx is None else t[idx]
        tk = _hit(prim, o, d if idx is None else d[idx])
        closer = tk < sub_t
        if idx is None:
            t = np.where(closer, tk, t)
            prim_idx[closer] = k
        else:
            t[idx[closer]] = tk[closer]
            prim_idx[idx[closer]] = k
    p = o + t[:, None] * d

    # Surface id, world normal and part label per pixel, from the same hit record.
    surface = face.copy()
    normal = raycast.ROOM_NORMALS[face]
    parts = np.zeros(t.shape, dtype=np.int64)
    for k in np.unique(prim_idx[prim_idx >= 0]):
        prim = scene.primitives[k]
        sel = prim_idx == k
        surface[sel] = prim.surface
        normal[sel] = _normal(prim, p[sel])
        parts[sel] = np.where(p[sel, 1] < prim.part_split, prim.part_lo, prim.part_hi)
    on_room = prim_idx < 0
    for rect in scene.rects:
        axis_u = 2 if rect.face in (0, 1) else 0  # side walls run along z, back wall along x
        sel = on_room & (face == rect.face)
        u, vv = p[:, axis_u], p[:, 1]
        sel &= (u >= rect.u0) & (u <= rect.u1) & (vv >= rect.v0) & (vv <= rect.v1)
        surface[sel] = rect.surface

    image = _shade(scene, p, normal, surface, rng)

    n_cam = normal @ scene.cam_rot              # R^T n for row vectors
    flip = np.einsum("pi,pi->p", n_cam, d_cam) > 0
    n_cam[flip] *= -1.0

    col = 0 if layout == "nyuv2" else 1
    class_of = np.array([KIND_CLASSES[s.kind][col] for s in scene.surfaces], dtype=np.int64)
    is_obj = np.array([s.is_object for s in scene.surfaces])
    inst = surface.reshape(h, w).astype(np.int32)
    return SceneRender(
        image=image.reshape(h, w, 3).astype(np.float32),
        depth=t.reshape(h, w).astype(np.float32),
        normals=n_cam.reshape(h, w, 3).astype(np.float32),
        instance=inst,
        semseg=class_of[inst],
        saliency=is_obj[inst].astype(np.float32),
        edges=label_edges(inst),
        parts=parts.reshape(h, w),
        layout=layout,
        class_of_instance=class_of,
    )


def _shade(scene: Scene, p, normal, surface, rng) -> np.ndarray:
    """Albedo x texture x (ambient + Lambert with object shadows), gamma-encoded."""
    surfs = scene.surfaces
    albedo = np.array([s.albedo for s in surfs])[surface]
    freq = np.array([s.tex_freq for s in surfs])[surface]           # (P, 2, 3)
    phase = np.array([s.tex_phase for s in surfs])[surface]         # (P, 2)
    amp = np.array([s.tex_amp for s in surfs])[surface]
    tex = 1.0 + amp * np.sin(np.einsum("pki,pi->pk", freq, p) + phase).mean(axis=1)
    checker = np.array([s.checker for s in surfs])[surface]
    on_checker = checker > 0
    if on_checker.any():
        c = checker[on_checker]
        cells = np.floor(p[on_checker, 0] / c) + np.floor(p[on_checker, 2] / c)
        tex[on_checker] *= np.where(cells % 2 == 0, 1.08, 0.92)
    albedo = albedo * tex[:, None]

    to_light = scene.light_pos - p
    dist = np.linalg.norm(to_light, axis=-1)
    lambert = np.clip(np.einsum("pi,pi->p", normal, to_light) / dist, 0.0, 1.0)
    lit = lambert > 0
    if lit.any() and scene.primitives:
        start = p[lit] + 1e-4 * normal[lit]
        ray = to_light[lit]
        blocked = np.zeros(len(start), dtype=bool)
        dist_lit = dist[lit]
        unit = ray / dist_lit[:, None]
        for prim in scene.primitives:
            # Only rays inside the cone the bounding sphere subtends at the light can be
            # blocked by it (and only from points beyond its near side).
            c, r = prim.bounding_sphere()
            w = c - scene.light_pos
            wn = float(np.linalg.norm(w))
            if wn > r:
                cos_cone = np.sqrt(1.0 - (r / wn) ** 2)
                cand = np.flatnonzero((unit @ (-w / wn) > cos_cone - 1e-6)
                                      & (dist_lit > wn - r) & ~blocked)
            else:
                cand = np.flatnonzero(~blocked)
            if len(cand):
                blocked[cand] |= _hit(prim, start[cand], ray[cand]) < 1.0
        vis = np.ones(len(p))
        vis[np.flatnonzero(lit)[blocked]] = 0.0
        lambert = lambert * vis
    atten = 1.0 / (1.0 + 0.04 * dist * dist)
    light = scene.ambient + (1.0 - scene.ambient) * 1.3 * lambert * atten
    rgb = albedo * light[:, None]
    if rng is not None:
        rgb = rgb + rng.normal(0.0, 0.01, rgb.shape)
    return np.clip(rgb, 0.0, 1.0) ** (1 / 2.2)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of the dataset length."""
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def render_index(index: int, size=(128, 128), seed: int = 0, split: str = "train",
                 layout: str = "nyuv2") -> SceneRender:
    """Sample and render image ``index`` of a (seed, split) stream."""
    h, w = parse_size(size)
    if split not in SPLITS:
        raise ValidationError(f"split '{split}' is not valid; expected one of {', '.join(SPLITS)}")
    if layout not in LAYOUTS:
        raise ValidationError(f"layout '{layout}' is not valid; expected one of {', '.join(LAYOUTS)}")
    rng = scene_rng(seed, split, index)
    scene = sample_scene(rng, layout, aspect=h / w)
    return render(scene, (h, w), layout, rng)


def infer_layout(tasks: Sequence[str]) -> str:
    """"pascal" when a PASCAL-only task is requested, else "nyuv2"."""
    return "pascal" if set(tasks) & {"human_parts", "saliency", "edges"} else "nyuv2"


class SynthDataset(DenseDataset):
    """``n`` procedural scenes rendered on the fly, in the sample contract.

    ``tasks`` selects the targets (NYU-v2 set or the PASCAL set; ``layout`` defaults from
    them and decides which class ids ``semseg`` uses). Rendered samples are cached in
    memory when ``cache`` is True (default: when they fit in about 1 GiB); augmentation
    is applied after the cache, so it still varies per epoch.
    """

    source = "procedural scenes"

    def __init__(self, n: int, size=(128, 128), seed: int = 0,
                 tasks: Sequence[str] = NYU_TASKS, split: str = "train",
                 layout: Optional[str] = None, augment=False, cache: Optional[bool] = None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValidationError(f"number of scenes {n!r} is not valid; expected an integer >= 0")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValidationError(f"seed {seed!r} is not valid; expected an integer >= 0")
        if split not in SPLITS:
            raise ValidationError(f"split '{split}' is not valid; expected one of {', '.join(SPLITS)}")
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        self.layout = layout or infer_layout(tasks)
        if self.layout not in LAYOUTS:
            raise ValidationError(f"layout '{self.layout}' is not valid; expected one of "
                                  f"{', '.join(LAYOUTS)}")
        tasks = check_tasks(tasks, SYNTH_TASKS[self.layout], f"{self.source} ({self.layout})")
        size = parse_size(size)
        super().__init__(tasks, None, augment)
        self.n, self.render_size, self.seed, self.split = int(n), size, int(seed), split
        if cache is None:
            cache = self.n * size[0] * size[1] * 32 < (1 << 30)
        self._cache: Optional[dict[int, Sample]] = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def render(self, index: int) -> SceneRender:
        """The full render of scene ``index`` (all labels, numpy)."""
        return render_index(index, self.render_size, self.seed, self.split, self.layout)

    def load(self, index: int) -> Sample:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        r = self.render(index)
        targets, masks = r.targets(self.tasks)
        sample = dense_sample(r.image, targets, masks)
        if self._cache is not None:
            self._cache[index] = sample
        return sample


def time_rendering(size, n: int = 20, layout: str = "nyuv2", seed: int = 0) -> float:
    """Mean milliseconds to sample and render one scene at ``size`` (for reports)."""
    import time

    start = time.perf_counter()
    for i in range(n):
        render_index(i, size, seed, "train", layout)
    return 1000.0 * (time.perf_counter() - start) / n
