"""PASCAL-Context loader on fixtures in the exact PASCAL_MT format (jpg, png, .mat)."""

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dymu_rt.data.edges import label_edges
from dymu_rt.data.pascal import PascalContextDataset
from dymu_rt.core.errors import DataError

torch.set_num_threads(1)
H, W = 10, 12
TASKS = ("semseg", "human_parts", "saliency", "normals", "edges")


def parts_mat(objects):
    """PASCAL-Part ``anno`` struct: objects = [(class, class_ind, mask, [(part, mask), ...])]."""
    obj = np.empty((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"),
                                            ("parts", "O")])
    for k, (name, ind, mask, parts) in enumerate(objects):
        if parts:
            p = np.empty((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for j, part in enumerate(parts):
                p[0, j] = part
        else:
            p = np.zeros((0, 0))
        obj[0, k] = (name, np.array([[ind]], np.uint8), mask.astype(np.uint8), p)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("x", obj)
    return {"anno": anno}


def write_pascal(root, label_map=True):
    rng = np.random.default_rng(1)
    for d in ("JPEGImages", "ImageSets/Context", "semseg/pascal-context", "human_parts",
              "sal_distill", "normals_distill", "pascal-context/trainval"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = ["2008_000002", "2008_000003"]
    (root / "ImageSets/Context/train.txt").write_text("\n".join(ids) + "\n")
    truth = {}
    for k, id_ in enumerate(ids):
        img = np.full((H, W, 3), 40 + 60 * k, np.uint8)
        img[:, W // 2:] = 200
        Image.fromarray(img).save(root / "JPEGImages" / f"{id_}.jpg", quality=100)
        seg = rng.integers(0, 21, (H, W)).astype(np.uint8)
        seg[0, :] = 255
        Image.fromarray(seg).save(root / "semseg/pascal-context" / f"{id_}.png")
        person = np.zeros((H, W), bool)
        person[2:9, 3:7] = True
        head = person & (np.arange(H)[:, None] < 4)
        hand = person & (np.arange(H)[:, None] == 5)
        leg = person & (np.arange(H)[:, None] >= 7)
        torso = person & ~head & ~hand & ~leg
        chair = np.zeros((H, W), bool)
        chair[6:, 8:] = True
        objs = [("chair", 9, chair, [])]
        if k == 0:
            objs.append(("person", 15, person, [("head", head), ("lhand", hand), ("ruleg", leg),
                                                ("torso", torso)]))
        scipy.io.savemat(root / "human_parts" / f"{id_}.mat", parts_mat(objs))
        sal = np.where(rng.random((H, W)) > 0.5, 255, 0).astype(np.uint8)
        Image.fromarray(sal).save(root / "sal_distill" / f"{id_}.png")
        n = rng.normal(size=(H, W, 3))
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        npng = ((n + 1) * 127.5 + 0.5).astype(np.uint8)
        npng[0, 0] = 128  # decodes to ~0: not a normal
        Image.fromarray(npng).save(root / "normals_distill" / f"{id_}.png")
        lm = rng.integers(0, 459, (H, W)).astype(np.uint16)
        if label_map:
            scipy.io.savemat(root / "pascal-context/trainval" / f"{id_}.mat", {"LabelMap": lm})
        truth[id_] = dict(img=img, seg=seg, head=head, hand=hand, leg=leg, torso=torso, sal=sal,
                          n=n, lm=lm)
    if not label_map:
        (root / "pascal-context/trainval").rmdir()
        (root / "pascal-context").rmdir()
    return ids, truth


def test_reads_pascal_mt(tmp_path):
    ids, truth = write_pascal(tmp_path)
    ds = PascalContextDataset(tmp_path, "train", TASKS)
    assert len(ds) == 2
    s, t = ds[0], truth[ids[0]]
    assert torch.allclose(s["image"], torch.from_numpy(t["img"]).permute(2, 0, 1) / 255.0, atol=0.03)
    seg = s["targets"]["semseg"]
    assert (seg[0] == -1).all() and not s["masks"]["semseg"][0].any()
    assert torch.equal(seg[1:], torch.from_numpy(t["seg"][1:].astype(np.int64)))
    parts = s["targets"]["human_parts"].numpy()
    assert (parts[t["head"]] == 1).all() and (parts[t["torso"]] == 2).all()
    assert (parts[t["hand"]] == 4).all() and (parts[t["leg"]] == 5).all()
    person = t["head"] | t["torso"] | t["hand"] | t["leg"]
    assert (parts[~person] == 0).all() and s["masks"]["human_parts"].all()
    assert torch.equal(s["targets"]["saliency"][0], torch.from_numpy(t["sal"] / 255.0).float())
    n, nm = s["targets"]["normals"], s["masks"]["normals"]
    assert not nm[0, 0] and nm.sum() == H * W - 1
    cos = (n * torch.from_numpy(t["n"]).permute(2, 0, 1).float()).sum(0)[nm]
    assert cos.min() > 0.999
    assert torch.equal(s["targets"]["edges"][0], torch.from_numpy(label_edges(t["lm"])))


def test_image_without_person_ignores_parts(tmp_path):
    write_pascal(tmp_path)
    s = PascalContextDataset(tmp_path, "train", ("human_parts",))[1]
    assert not s["masks"]["human_parts"].any()
    assert (s["targets"]["human_parts"] == -1).all()


def test_edges_fall_back_to_semseg(tmp_path):
    ids, truth = write_pascal(tmp_path, label_map=False)
    s = PascalContextDataset(tmp_path, "train", ("edges",))[0]
    seg = truth[ids[0]]["seg"].astype(np.int64)
    seg[seg == 255] = -1
    assert torch.equal(s["targets"]["edges"][0], torch.from_numpy(label_edges(seg)))


def test_resize_to_preset(tmp_path):
    write_pascal(tmp_path)
    s = PascalContextDataset(tmp_path, "train", TASKS, size=(16, 16))[0]
    assert s["image"].shape == (3, 16, 16)
    assert all(v.shape[-2:] == (16, 16) for v in s["targets"].values())
    v = s["masks"]["normals"]
    assert torch.allclose(s["targets"]["normals"].norm(dim=0)[v], torch.ones(int(v.sum())), atol=1e-4)


def test_missing_split_and_files(tmp_path):
    ids, _ = write_pascal(tmp_path)
    with pytest.raises(DataError, match="val.txt"):
        PascalContextDataset(tmp_path, "val")
    (tmp_path / "sal_distill" / f"{ids[1]}.png").unlink()
    with pytest.raises(DataError, match=f"1 of 2 .*saliency.*{ids[1]}.png"):
        PascalContextDataset(tmp_path, "train", TASKS)
    PascalContextDataset(tmp_path, "train", ("semseg",))  # not needed, not required


def test_truncated_and_malformed_files(tmp_path):
    ids, _ = write_pascal(tmp_path)
    jpg = tmp_path / "JPEGImages" / f"{ids[0]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:40])
    with pytest.raises(DataError, match=f"{ids[0]}.jpg.*truncated"):
        PascalContextDataset(tmp_path, "train", ("semseg",))[0]
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(
        tmp_path / "semseg/pascal-context" / f"{ids[1]}.png")
    with pytest.raises(DataError, match="3 channels; expected a single-channel"):
        PascalContextDataset(tmp_path, "train", ("semseg",))[1]
    scipy.io.savemat(tmp_path / "human_parts" / f"{ids[1]}.mat", {"other": np.zeros(3)})
    with pytest.raises(DataError, match="anno"):
        PascalContextDataset(tmp_path, "train", ("human_parts",))[1]
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(tmp_path / "sal_distill" / f"{ids[1]}.png")
    with pytest.raises(DataError, match="shape 11x12; expected a saliency map"):
        PascalContextDataset(tmp_path, "train", ("saliency",))[1]
    Image.fromarray(np.full((H, W), 30, np.uint8)).save(
        tmp_path / "semseg/pascal-context" / f"{ids[1]}.png")
    with pytest.raises(DataError, match="label 30"):
        PascalContextDataset(tmp_path, "train", ("semseg",))[1]
