"""Random room scenes: what is in the room, where, and what it is labelled as.

A scene is a box-shaped room (floor, ceiling, four walls, with pictures and windows on
the walls) holding furniture-like objects built from spheres, upright boxes (optionally
turned about the vertical axis) and upright cylinders, lit by one point light.
:func:`sample_scene` draws one from a numpy Generator; :mod:`dymu_rt.data.synth`
renders it.

Labels. Each *surface* (a room face, a picture, a window, or a whole object made of
several primitives) is one instance and carries its class in both layouts:

=============  ============  ===============  =============================
object         shapes        NYU-v2 (13)      PASCAL-Context (21)
=============  ============  ===============  =============================
floor          room face     4 floor          0 background
walls          room faces    11 wall          0 background
ceiling        room face     2 ceiling        0 background
picture        wall rect     7 picture        0 background
window         wall rect     12 window        0 background
bed            box           0 bed            (not placed)
sofa           2 boxes       8 sofa           18 sofa
table          box + cyl.    9 table          11 diningtable
chair          3 boxes       3 chair          9 chair
tv             thin box      10 tv            20 tvmonitor
cabinet        box           5 furniture      (not placed)
books          small box     1 books          (not placed)
ball / vase    sphere / cyl  6 objects        5 bottle (vase only)
potted plant   cyl + sphere  6 objects        16 pottedplant
person         6 primitives  6 objects        15 person
=============  ============  ===============  =============================

Human parts (PASCAL layout, 0 = background + ASTMT's 6 groups): a person is a head
sphere (1 head), a torso box (2 torso), two arm cylinders split at half length into
upper arm (3) and lower arm (4), and two leg cylinders split into upper leg (5) and
lower leg (6). Every non-person pixel is 0 (background).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Per-kind base albedo (RGB in [0, 1]); instances jitter around it so colour stays a cue.
KIND_COLORS = {
    "floor": (0.55, 0.42, 0.30), "wall": (0.80, 0.78, 0.72), "ceiling": (0.92, 0.92, 0.90),
    "picture": (0.65, 0.30, 0.25), "window": (0.70, 0.85, 1.00), "bed": (0.85, 0.80, 0.92),
    "sofa": (0.25, 0.35, 0.65), "table": (0.50, 0.30, 0.15), "chair": (0.75, 0.55, 0.20),
    "tv": (0.08, 0.08, 0.10), "cabinet": (0.60, 0.62, 0.55), "books": (0.80, 0.20, 0.25),
    "ball": (0.90, 0.50, 0.10), "vase": (0.20, 0.65, 0.60), "plant": (0.20, 0.55, 0.20),
    "person": (0.85, 0.65, 0.55),
}

# kind -> (NYU-v2 13-class id, PASCAL-Context 21-class id)
KIND_CLASSES = {
    "floor": (4, 0), "wall": (11, 0), "ceiling": (2, 0), "picture": (7, 0), "window": (12, 0),
    "bed": (0, 0), "sofa": (8, 18), "table": (9, 11), "chair": (3, 9), "tv": (10, 20),
    "cabinet": (5, 0), "books": (1, 0), "ball": (6, 0), "vase": (6, 5), "plant": (6, 16),
    "person": (6, 15),
}

LAYOUTS = ("nyuv2", "pascal")


@dataclasses.dataclass
class Surface:
    """One labelled thing: an instance with a class per layout, albedo and texture."""

    kind: str
    is_object: bool
    albedo: np.ndarray          # (3,)
    tex_freq: np.ndarray        # (2, 3) spatial frequencies (rad/m) of two sinusoids
    tex_phase: np.ndarray       # (2,)
    tex_amp: float
    checker: float = 0.0        # checker size in metres (floors), 0 = none


@dataclasses.dataclass
class Primitive:
    """One ray-traced shape belonging to ``surface``.

    ``size``: sphere (radius,), box half extents (hx, hy, hz), cylinder (radius, y0, y1).
    The part label is ``part_lo`` below height ``part_split`` (world y) and ``part_hi``
    above it.
    """

    shape: str
    center: np.ndarray          # sphere/box centre; cylinder (x, 0, z) of its axis
    size: np.ndarray
    yaw: float
    surface: int
    part_lo: int = 0
    part_hi: int = 0
    part_split: float = 0.0

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """(centre, radius) of a sphere enclosing the primitive (for ray culling)."""
        if self.shape == "sphere":
            return self.center, float(self.size[0])
        if self.shape == "box":
            return self.center, float(np.linalg.norm(self.size))
        r, y0, y1 = self.size
        c = np.array([self.center[0], 0.5 * (y0 + y1), self.center[2]])
        return c, float(math.hypot(r, 0.5 * (y1 - y0)))


@dataclasses.dataclass
class WallRect:
    """A picture or window: a rectangle on room face ``face`` (see raycast.hit_room)."""

    face: int
    u0: float
    u1: float
    v0: float
    v1: float
    surface: int


@dataclasses.dataclass
class Scene:
    """Everything the renderer needs; surfaces 0..5 are the room faces."""

    room_lo: np.ndarray
    room_hi: np.ndarray
    cam_pos: np.ndarray
    cam_rot: np.ndarray         # (3, 3) columns: camera x (right), y (down), z (forward) in world
    hfov: float                 # horizontal field of view, radians
    light_pos: np.ndarray
    ambient: float
    surfaces: list[Surface]
    primitives: list[Primitive]
    rects: list[WallRect]

    def focal(self, width: int) -> float:
        """Focal length in pixels for an image ``width`` pixels wide."""
        return 0.5 * width / math.tan(0.5 * self.hfov)


def camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world rotation: columns are the camera's right, down and forward axes."""
    fwd = np.array([math.sin(yaw) * math.cos(pitch), -math.sin(pitch),
                    math.cos(yaw) * math.cos(pitch)])
    right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    down = np.cross(right, fwd)
    return np.stack([right, down, fwd], axis=1)


class _Builder:
    """Accumulates surfaces and primitives while a scene is sampled."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.surfaces: list[Surface] = []
        self.primitives: list[Primitive] = []
        self.rects: list[WallRect] = []

    def surface(self, kind: str, is_object: bool, checker: float = 0.0) -> int:
        rng = self.rng
        base = np.array(KIND_COLORS[kind])
        albedo = np.clip(base + rng.uniform(-0.06, 0.06, 3), 0.02, 1.0)
        freq = rng.normal(0.0, 1.0, (2, 3)) * rng.uniform(4.0, 18.0)
        self.surfaces.append(Surface(kind, is_object, albedo, freq, rng.uniform(0, 2 * np.pi, 2),
                                     float(rng.uniform(0.03, 0.10)), checker))
        return len(self.surfaces) - 1

    def add(self, shape, center, size, surface, yaw=0.0, part_lo=0, part_hi=0, part_split=0.0):
        self.primitives.append(Primitive(shape, np.asarray(center, float), np.asarray(size, float),
                                         float(yaw), surface, part_lo, part_hi, float(part_split)))


def _offset(x: float, z: float, yaw: float, dx: float, dz: float) -> tuple[float, float]:
    """World (x, z) of a point at local offset (dx, dz) from (x, z) in a frame turned by yaw."""
    cs, sn = math.cos(yaw), math.sin(yaw)
    return x + cs * dx - sn * dz, z + sn * dx + cs * dz


# kind -> footprint radius (m) used for placement, for kinds standing on the floor.
_FOOTPRINT = {"bed": 1.2, "sofa": 1.0, "table": 0.6, "chair": 0.4, "cabinet": 0.6,
              "ball": 0.25, "plant": 0.3, "person": 0.35}
_FLOOR_KINDS = {
    "nyuv2": (["bed", "sofa", "table", "chair", "cabinet", "ball", "plant", "person"],
              [0.12, 0.14, 0.18, 0.2, 0.14, 0.08, 0.08, 0.06]),
    "pascal": (["sofa", "table", "chair", "plant", "person"], [0.2, 0.25, 0.3, 0.25, 0.0]),
}


def _place_object(b: _Builder, kind: str, x: float, z: float, yaw: float) -> tuple[str, float] | None:
    """Add a floor-standing object; returns (support kind, top height) if others can sit on it."""
    rng = b.rng
    if kind == "bed":
        s = b.surface(kind, True)
        h = rng.uniform(0.45, 0.6)
        b.add("box", (x, h / 2, z), (rng.uniform(0.75, 0.95), h / 2, rng.uniform(0.95, 1.1)), s, yaw)
    elif kind == "sofa":
        s = b.surface(kind, True)
        w, d, h = rng.uniform(0.7, 1.0), rng.uniform(0.38, 0.45), rng.uniform(0.4, 0.5)
        b.add("box", (x, h / 2, z), (w, h / 2, d), s, yaw)
        bx, bz = _offset(x, z, yaw, 0.0, d - 0.1)
        b.add("box", (bx, h + 0.2, bz), (w, 0.2, 0.1), s, yaw)  # backrest
    elif kind == "table":
        s = b.surface(kind, True)
        h = rng.uniform(0.65, 0.8)
        hw, hd = rng.uniform(0.35, 0.6), rng.uniform(0.3, 0.5)
        b.add("box", (x, h - 0.025, z), (hw, 0.025, hd), s, yaw)
        b.add("cylinder", (x, 0.0, z), (0.06, 0.0, h - 0.05), s)
        return kind, h
    elif kind == "chair":
        s = b.surface(kind, True)
        h = rng.uniform(0.42, 0.5)
        b.add("box", (x, h - 0.03, z), (0.22, 0.03, 0.22), s, yaw)
        bx, bz = _offset(x, z, yaw, 0.0, 0.2)
        b.add("box", (bx, h + 0.22, bz), (0.22, 0.22, 0.025), s, yaw)  # backrest
        b.add("cylinder", (x, 0.0, z), (0.04, 0.0, h - 0.06), s)
    elif kind == "cabinet":
        s = b.surface(kind, True)
        h = rng.uniform(0.5, 1.0)
        b.add("box", (x, h / 2, z), (rng.uniform(0.35, 0.6), h / 2, rng.uniform(0.22, 0.35)), s, yaw)
        return kind, h
    elif kind == "ball":
        s = b.surface(kind, True)
        r = rng.uniform(0.1, 0.22)
        b.add("sphere", (x, r, z), (r,), s)
    elif kind == "plant":
        s = b.surface(kind, True)
        hp = rng.uniform(0.25, 0.4)
        r = rng.uniform(0.18, 0.3)
        b.add("cylinder", (x, 0.0, z), (0.14, 0.0, hp), s)
        b.add("sphere", (x, hp + r * 0.8, z), (r,), s)
    elif kind == "person":
        _place_person(b, x, z, yaw)
    return None


def _place_person(b: _Builder, x: float, z: float, yaw: float) -> None:
    """A standing figure whose primitives carry the human-part labels (module docstring)."""
    rng = b.rng
    s = b.surface("person", True)
    h = rng.uniform(1.5, 1.85)
    leg_top, torso_top = 0.47 * h, 0.8 * h
    for side in (-1.0, 1.0):
        lx, lz = _offset(x, z, yaw, side * 0.09, 0.0)
        b.add("cylinder", (lx, 0.0, lz), (0.065, 0.0, leg_top), s,
              part_lo=6, part_hi=5, part_split=leg_top / 2)
        ax, az = _offset(x, z, yaw, side * 0.25, 0.0)
        a0 = 0.44 * h
        b.add("cylinder", (ax, 0.0, az), (0.045, a0, torso_top - 0.02), s,
              part_lo=4, part_hi=3, part_split=(a0 + torso_top) / 2)
    b.add("box", (x, (leg_top + torso_top) / 2, z), (0.19, (torso_top - leg_top) / 2, 0.1), s, yaw,
          part_lo=2, part_hi=2)
    r = 0.075 * h
    b.add("sphere", (x, torso_top + r + 0.03, z), (r,), s, part_lo=1, part_hi=1)


def _place_on_top(b: _Builder, layout: str, x: float, z: float, yaw: float, top: float) -> None:
    """Put a small object on a table or cabinet top."""
    rng = b.rng
    kinds = ["tv", "books", "vase"] if layout == "nyuv2" else ["tv", "vase"]
    kind = kinds[rng.integers(len(kinds))]
    s = b.surface(kind, True)
    if kind == "tv":
        w, hh = rng.uniform(0.3, 0.5), rng.uniform(0.18, 0.3)
        b.add("box", (x, top + hh, z), (w, hh, 0.03), s, yaw)
    elif kind == "books":
        hh = rng.uniform(0.03, 0.08)
        b.add("box", (x, top + hh, z), (0.13, hh, 0.1), s, yaw + rng.uniform(-0.5, 0.5))
    else:
        b.add("cylinder", (x, 0.0, z), (rng.uniform(0.04, 0.07), top, top + rng.uniform(0.15, 0.3)), s)


def _visible(scene_cam: tuple, p: np.ndarray, margin: float = 0.9) -> bool:
    """Whether world point ``p`` projects inside the image (with a margin)."""
    pos, rot, hfov, aspect = scene_cam
    pc = rot.T @ (p - pos)
    if pc[2] <= 0.3:
        return False
    tan_h = math.tan(hfov / 2)
    return abs(pc[0] / pc[2]) < margin * tan_h and abs(pc[1] / pc[2]) < margin * tan_h * aspect


def sample_scene(rng: np.random.Generator, layout: str = "nyuv2", aspect: float = 1.0) -> Scene:
    """Draw a random room scene for ``layout`` ("nyuv2" or "pascal").

    ``aspect`` = H / W of the image it will be rendered at, so objects are placed in view.
    """
    b = _Builder(rng)
    width, depth, height = rng.uniform(4.0, 6.0), rng.uniform(5.0, 7.0), rng.uniform(2.6, 3.0)
    lo = np.array([-width / 2, 0.0, 0.0])
    hi = np.array([width / 2, height, depth])
    # Room faces, in hit_room's face order: left, right, floor, ceiling, front, back.
    wall_albedo = None
    for kind in ("wall", "wall", "floor", "ceiling", "wall", "wall"):
        s = b.surface(kind, False, checker=float(rng.uniform(0.3, 0.6)) if kind == "floor" else 0.0)
        if kind == "wall":  # one paint colour per room
            wall_albedo = b.surfaces[s].albedo if wall_albedo is None else wall_albedo
            b.surfaces[s].albedo = wall_albedo
    cam_pos = np.array([rng.uniform(-0.6, 0.6), rng.uniform(1.2, 1.7), rng.uniform(0.2, 0.5)])
    yaw, pitch, hfov = rng.uniform(-0.3, 0.3), rng.uniform(0.2, 0.45), rng.uniform(0.95, 1.25)
    rot = camera_rotation(yaw, pitch)
    cam = (cam_pos, rot, hfov, aspect)

    # Pictures and windows on the side and back walls (faces 0, 1, 5).
    for _ in range(rng.integers(1, 4)):
        kind = "window" if rng.random() < 0.35 else "picture"
        face = int(rng.choice([0, 1, 5]))
        along = (lo[2] + 1.0, hi[2] - 0.5) if face in (0, 1) else (lo[0] + 0.5, hi[0] - 0.5)
        w = rng.uniform(0.5, 1.2) if kind == "picture" else rng.uniform(0.8, 1.6)
        hgt = rng.uniform(0.4, 0.9) if kind == "picture" else rng.uniform(1.0, 1.4)
        u0 = rng.uniform(along[0], max(along[0], along[1] - w))
        v0 = rng.uniform(1.0, max(1.0, height - hgt - 0.2))
        s = b.surface(kind, False)
        b.rects.append(WallRect(face, u0, u0 + w, v0, v0 + hgt, s))

    kinds, probs = _FLOOR_KINDS[layout]
    probs = np.array(probs) / np.sum(probs)
    wanted = int(rng.integers(3, 8)) if layout == "nyuv2" else int(rng.integers(2, 5))
    placed: list[tuple[float, float, float]] = []
    queue = (["person"] * int(rng.integers(1, 3)) if layout == "pascal" else [])
    queue += [kinds[i] for i in rng.choice(len(kinds), wanted, p=probs)]
    for kind in queue:
        rad = _FOOTPRINT[kind]
        for _ in range(20):  # rejection sampling: in the room, in view, not overlapping
            x = rng.uniform(lo[0] + rad, hi[0] - rad)
            z = rng.uniform(1.4, hi[2] - rad)
            if not _visible(cam, np.array([x, 0.4, z])):
                continue
            if all((x - px) ** 2 + (z - pz) ** 2 > (rad + pr) ** 2 for px, pz, pr in placed):
                break
        else:
            continue
        placed.append((x, z, rad))
        # Face the camera, roughly: people and chairs look lived-in that way.
        # Local +z (backrests) points away from the camera: world (-sin yaw, cos yaw).
        face_cam = math.atan2(cam_pos[0] - x, z - cam_pos[2])
        obj_yaw = face_cam + rng.uniform(-0.6, 0.6) if kind in ("person", "chair", "sofa") \
            else rng.uniform(-math.pi, math.pi)
        support = _place_object(b, kind, x, z, obj_yaw)
        if support is not None and rng.random() < 0.7:
            _place_on_top(b, layout, x, z, obj_yaw, support[1])

    light = np.array([rng.uniform(lo[0] + 0.5, hi[0] - 0.5), height - 0.2,
                      rng.uniform(0.5, hi[2] - 0.5)])
    return Scene(lo, hi, cam_pos, rot, hfov, light, float(rng.uniform(0.25, 0.4)),
                 b.surfaces, b.primitives, b.rects)
