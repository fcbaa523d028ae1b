"""Procedural scenes: determinism, geometric truth of the labels, the SynthDataset contract."""

import dataclasses

import numpy as np
import pytest
import torch

from dymu_rt.data import synth
from dymu_rt.data.scene import Primitive, sample_scene
from dymu_rt.data.synth import SynthDataset, render, render_index
from dymu_rt.core.errors import ValidationError

torch.set_num_threads(1)
NYU = ("semseg", "normals", "depth")
PASCAL = ("semseg", "human_parts", "saliency", "normals", "edges")


def test_deterministic_per_index_and_splits_disjoint():
    a = render_index(3, (24, 32), seed=5)
    b = render_index(3, (24, 32), seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.semseg, b.semseg)
    # Image i does not depend on how many images the dataset has.
    short, long = SynthDataset(4, (24, 32), seed=5), SynthDataset(40, (24, 32), seed=5)
    assert torch.equal(short[3]["image"], long[3]["image"])
    assert torch.equal(long[3]["image"], torch.from_numpy(a.image).permute(2, 0, 1))
    val = render_index(3, (24, 32), seed=5, split="val")
    other_seed = render_index(3, (24, 32), seed=6)
    assert not np.array_equal(a.image, val.image)
    assert not np.array_equal(a.image, other_seed.image)


@pytest.mark.parametrize("layout", ["nyuv2", "pascal"])
def test_labels_come_from_one_hit_record(layout):
    for i in range(4):
        r = render_index(i, (40, 56), layout=layout)
        assert r.image.shape == (40, 56, 3) and r.image.dtype == np.float32
        assert 0.0 <= r.image.min() and r.image.max() <= 1.0
        assert (r.depth > 0).all()
        assert np.allclose(np.linalg.norm(r.normals, axis=-1), 1.0, atol=1e-5)
        # Semantic map = class of the instance hit at that pixel, exactly.
        assert np.array_equal(r.semseg, r.class_of_instance[r.instance])
        # Surface ids 0..5 are the room; saliency marks everything else that is an object.
        assert not r.saliency[r.instance < 6].any()
        assert set(np.unique(r.parts)) <= set(range(7))
        assert (r.parts[r.semseg != (15 if layout == "pascal" else 6)] == 0).all()
        n_classes = 13 if layout == "nyuv2" else 21
        assert r.semseg.min() >= 0 and r.semseg.max() < n_classes


def test_normals_face_the_camera():
    r = render_index(1, (32, 32))
    scene = sample_scene(synth.scene_rng(0, "train", 1), "nyuv2")
    d_cam, _ = synth.camera_rays(scene, (32, 32))
    assert (np.einsum("pi,pi->p", r.normals.reshape(-1, 3), d_cam) < 0).all()


def _backprojected_normals(depth: np.ndarray, f: float) -> np.ndarray:
    """Normals of the surface through the back-projected depth (central differences)."""
    h, w = depth.shape
    u = (np.arange(w) + 0.5 - w / 2) / f
    v = (np.arange(h) + 0.5 - h / 2) / f
    z = depth.astype(np.float64)
    pts = np.stack([u[None, :] * z, v[:, None] * z, z], axis=-1)
    dx = pts[1:-1, 2:] - pts[1:-1, :-2]
    dy = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n = np.cross(dx, dy)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    flip = np.einsum("hwi,hwi->hw", n, pts[1:-1, 1:-1]) > 0
    n[flip] *= -1
    return n


@pytest.mark.parametrize("index", [0, 1, 2])
def test_depth_and_normals_agree_on_flat_surfaces(index):
    size = (48, 64)
    rng = synth.scene_rng(0, "train", index)
    scene = sample_scene(rng, "nyuv2", aspect=size[0] / size[1])
    r = render(scene, size, "nyuv2")
    est = _backprojected_normals(r.depth, scene.focal(size[1]))
    n, inst = r.normals, r.instance
    c = (slice(1, -1), slice(1, -1))
    # Flat: the 3x3 neighbourhood is one surface with one stored normal.
    flat = np.ones(est.shape[:2], dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            sl = (slice(1 + dy, size[0] - 1 + dy), slice(1 + dx, size[1] - 1 + dx))
            flat &= inst[sl] == inst[c]
            flat &= np.abs(n[sl] - n[c]).max(axis=-1) < 1e-6
    assert flat.sum() > 0.5 * flat.size
    cos = np.einsum("hwi,hwi->hw", est, n[c].astype(np.float64))[flat]
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0


def test_sphere_silhouette_matches_analytic_projection():
    size = (40, 52)
    scene = sample_scene(np.random.default_rng(0), "nyuv2", aspect=size[0] / size[1])
    centre = scene.cam_pos + scene.cam_rot @ np.array([0.3, 0.2, 3.0])
    surf = len(scene.surfaces)
    scene.surfaces.append(dataclasses.replace(scene.surfaces[0], kind="ball", is_object=True))
    scene = dataclasses.replace(scene, rects=[], primitives=[
        Primitive("sphere", centre, np.array([0.6]), 0.0, surf)])
    r = render(scene, size, "nyuv2")
    d_cam, d = synth.camera_rays(scene, size)
    d_unit = d / np.linalg.norm(d, axis=-1, keepdims=True)
    oc = centre - scene.cam_pos
    dist = np.linalg.norm(oc - (d_unit @ oc)[:, None] * d_unit, axis=-1)
    inside = (dist < 0.6).reshape(size)
    clear = np.abs(dist - 0.6).reshape(size) > 1e-9
    assert inside.sum() > 50
    sil = r.instance == surf
    assert np.array_equal(sil[clear], inside[clear])
    assert np.array_equal(r.semseg == 6, sil)  # ball -> NYU "objects"; nothing else is 6


def test_screen_space_culling_changes_nothing(monkeypatch):
    culled = [render_index(i, (30, 44), layout=lay) for i in range(3) for lay in ("nyuv2", "pascal")]
    monkeypatch.setattr(synth, "_screen_window", lambda *a: None)
    full = [render_index(i, (30, 44), layout=lay) for i in range(3) for lay in ("nyuv2", "pascal")]
    for a, b in zip(culled, full):
        assert np.array_equal(a.instance, b.instance)
        assert np.allclose(a.depth, b.depth) and np.allclose(a.image, b.image)


def test_edges_are_instance_boundaries_one_pixel_wide():
    r = render_index(0, (32, 32), layout="pascal")
    inst = r.instance
    right = np.zeros_like(r.edges, dtype=bool)
    right[:, :-1] = inst[:, :-1] != inst[:, 1:]
    down = np.zeros_like(right)
    down[:-1] = inst[:-1] != inst[1:]
    assert np.array_equal(r.edges.astype(bool), right | down)
    assert 0 < r.edges.mean() < 0.5


def test_parts_ignored_without_person():
    r = render_index(0, (32, 32), layout="pascal")
    r.parts[:] = 0
    targets, masks = r.targets(["human_parts"])
    assert not masks["human_parts"].any() and (targets["human_parts"] == -1).all()


@pytest.mark.parametrize("tasks", [NYU, PASCAL])
def test_synth_dataset_sample_contract(tasks):
    ds = SynthDataset(3, (24, 20), tasks=tasks)
    s = ds[2]
    assert s["image"].shape == (3, 24, 20) and s["image"].dtype == torch.float32
    assert set(s["targets"]) == set(tasks) == set(s["masks"])
    shapes = {"semseg": (24, 20), "human_parts": (24, 20), "normals": (3, 24, 20),
              "depth": (1, 24, 20), "saliency": (1, 24, 20), "edges": (1, 24, 20)}
    for t in tasks:
        assert tuple(s["targets"][t].shape) == shapes[t]
        assert s["masks"][t].shape == (24, 20) and s["masks"][t].dtype == torch.bool
    assert ds.layout == ("pascal" if "edges" in tasks else "nyuv2")
    assert s["targets"]["semseg"].dtype == torch.int64
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["masks"]["semseg"].shape == (2, 24, 20)
    assert ds[2] is ds[2]  # cached
    with pytest.raises(IndexError):
        ds[3]


def test_synth_dataset_rejects_bad_arguments():
    with pytest.raises(ValidationError, match="human_parts"):
        SynthDataset(2, 16, tasks=("semseg", "human_parts"), layout="nyuv2")
    with pytest.raises(ValidationError, match="split"):
        SynthDataset(2, 16, split="test")
    with pytest.raises(ValidationError, match="-1"):
        SynthDataset(-1, 16)
    with pytest.raises(ValidationError, match="size"):
        SynthDataset(2, "12y3")
    with pytest.raises(ValidationError, match="range"):
        SynthDataset(2, 4)
