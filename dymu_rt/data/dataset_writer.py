"""Write procedural scenes to disk in a real dataset's layout (``dymu-rt data synth``).

The NYU-v2 layout is MTAN's (:mod:`dymu_rt.data.nyuv2`), the PASCAL layout is
PASCAL_MT's (:mod:`dymu_rt.data.pascal`), so the same loaders read real and procedural
data. NYU-v2 files are float32 .npy and read back bit-exact; the PASCAL layout stores
images as JPEG (quality 95) and normals as 8-bit PNG, as the real dataset does, so those
read back approximately. Extra, never required by the loaders: ``synth.json`` (how the
data was made) and ``previews/*.png``. In the PASCAL layout ``pascal-context/trainval/
{id}.mat`` holds the *instance* map as ``LabelMap`` so that edges read back equal the
rendered instance boundaries.

Everything is written into a hidden staging folder inside ``out`` and moved into place
at the end, each file itself written atomically: a killed run leaves no dataset folder
that looks complete and no truncated file under a final name.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np

from dymu_rt import __version__
from dymu_rt.core.errors import ValidationError
from dymu_rt.core.io import atomic_path, atomic_write_bytes, atomic_write_json, read_json
from dymu_rt.core.labels import HUMAN_PART_CLASSES, NYU13_CLASSES, PASCAL_CLASSES
from dymu_rt.data.base import parse_size
from dymu_rt.data.preview import preview_image
from dymu_rt.data.scene import LAYOUTS
from dymu_rt.data.synth import SceneRender, render_index
from dymu_rt.utils.progress import make_progress

STAGING_PREFIX = ".dymu-synth-staging"
# Top-level entries each layout writes (and --overwrite replaces; nothing else is touched).
LAYOUT_ENTRIES = {
    "nyuv2": ("train", "val", "previews", "synth.json"),
    "pascal": ("JPEGImages", "ImageSets", "semseg", "human_parts", "sal_distill",
               "normals_distill", "pascal-context", "previews", "synth.json"),
}
# One PASCAL-Part name per part group (any name of the group maps back to it).
_PART_NAMES = {1: "head", 2: "torso", 3: "luarm", 4: "llarm", 5: "luleg", 6: "llleg"}


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)


def _save_png(path: Path, arr: np.ndarray, **kw) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG" if path.suffix == ".jpg" else "PNG", **kw)
    atomic_write_bytes(path, buf.getvalue())


def _save_mat(path: Path, variables: dict) -> None:
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True)
    atomic_write_bytes(path, buf.getvalue())


def write_nyuv2_sample(root: Path, split: str, index: int, r: SceneRender) -> None:
    """One scene as MTAN's image/label/depth/normal .npy files (float32)."""
    d = root / split
    _save_npy(d / "image" / f"{index}.npy", r.image.astype(np.float32))
    _save_npy(d / "label" / f"{index}.npy", r.semseg.astype(np.float32))
    _save_npy(d / "depth" / f"{index}.npy", r.depth[..., None].astype(np.float32))
    _save_npy(d / "normal" / f"{index}.npy", r.normals.astype(np.float32))


def human_parts_struct(r: SceneRender, name: str) -> dict:
    """PASCAL-Part style ``anno`` struct: every object instance, with parts for people."""
    objects = []
    for inst in np.unique(r.instance):
        cls = int(r.class_of_instance[inst])
        if cls == 0:
            continue
        mask = (r.instance == inst).astype(np.uint8)
        parts = []
        if cls == 15:
            for pid, pname in _PART_NAMES.items():
                pm = mask.astype(bool) & (r.parts == pid)
                if pm.any():
                    parts.append((pname, pm.astype(np.uint8)))
        objects.append((PASCAL_CLASSES[cls], cls, mask, parts))
    obj_arr = np.empty((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"),
                                                 ("mask", "O"), ("parts", "O")])
    for k, (cname, cls, mask, parts) in enumerate(objects):
        if parts:
            part_arr = np.empty((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for j, p in enumerate(parts):
                part_arr[0, j] = p
        else:
            part_arr = np.zeros((0, 0))
        obj_arr[0, k] = (cname, np.array([[cls]], dtype=np.uint8), mask, part_arr)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (name, obj_arr)
    return {"anno": anno}


def write_pascal_sample(root: Path, id_: str, r: SceneRender) -> None:
    """One scene as PASCAL_MT files (JPEG, PNG labels, .mat parts and label map)."""
    _save_png(root / "JPEGImages" / f"{id_}.jpg", (r.image * 255 + 0.5).astype(np.uint8),
              quality=95)
    _save_png(root / "semseg" / "pascal-context" / f"{id_}.png", r.semseg.astype(np.uint8))
    _save_png(root / "sal_distill" / f"{id_}.png", (r.saliency * 255).astype(np.uint8))
    _save_png(root / "normals_distill" / f"{id_}.png",
              ((r.normals + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8))
    _save_mat(root / "human_parts" / f"{id_}.mat", human_parts_struct(r, id_))
    _save_mat(root / "pascal-context" / "trainval" / f"{id_}.mat",
              {"LabelMap": r.instance.astype(np.uint16)})


def _prepare_out(out: Path, layout: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ValidationError(f"output {out} exists and is not a folder")
    if out.is_dir():
        for stale in out.glob(f"{STAGING_PREFIX}*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        if any(out.iterdir()) and not overwrite:
            raise ValidationError(f"output folder {out} is not empty; pass --overwrite to "
                                  "replace the dataset in it, or choose another --out")


def write_synth_dataset(out, n: int = 2000, size=128, seed: int = 0, layout: str = "nyuv2",
                        val_fraction: float = 0.2, overwrite: bool = False, previews: int = 4,
                        progress: bool = True) -> dict:
    """Render ``n`` scenes into ``out`` in ``layout``'s on-disk format; returns a summary.

    The first ``round(n * val_fraction)`` scenes of the val stream form ``val``, the
    others the first scenes of the train stream (see :func:`dymu_rt.data.synth.scene_rng`).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValidationError(f"--n {n} is not valid; expected a number of images >= 1")
    if not 0.0 <= val_fraction < 1.0:
        raise ValidationError(f"--val-fraction {val_fraction} is not valid; expected 0 <= f < 1")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValidationError(f"--seed {seed} is not valid; expected an integer >= 0")
    if layout not in LAYOUTS:
        raise ValidationError(f"--layout '{layout}' is not valid; expected one of {', '.join(LAYOUTS)}")
    h, w = parse_size(size, "--size")
    n_val = int(round(n * val_fraction))
    counts = {"train": int(n) - n_val, "val": n_val}
    out = Path(out)
    _prepare_out(out, layout, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    stage = out / f"{STAGING_PREFIX}-{os.getpid()}"
    stage.mkdir()
    preview_files = []
    try:
        render_s = 0.0
        with make_progress(disable=not progress) as bar:
            task = bar.add_task(f"rendering {layout} scenes {h}x{w}", total=int(n), info="")
            for split, count in counts.items():
                ids = []
                for i in range(count):
                    t0 = time.perf_counter()
                    r = render_index(i, (h, w), seed, split, layout)
                    render_s += time.perf_counter() - t0
                    if layout == "nyuv2":
                        write_nyuv2_sample(stage, split, i, r)
                    else:
                        ids.append(f"{split}_{i:06d}")
                        write_pascal_sample(stage, ids[-1], r)
                    if split == "train" and i < previews or split == "val" and i < min(previews, 1):
                        p = stage / "previews" / f"{split}_{i:04d}.png"
                        with atomic_path(p) as tmp:
                            preview_image(r).save(tmp, format="PNG")
                        preview_files.append(p.name)
                    bar.update(task, advance=1, info=split)
                if layout == "pascal":
                    atomic_write_bytes(stage / "ImageSets" / "Context" / f"{split}.txt",
                                       "".join(f"{i}\n" for i in ids).encode())
            if layout == "nyuv2":  # an empty split still gets its folders
                for split in counts:
                    for sub in ("image", "label", "depth", "normal"):
                        (stage / split / sub).mkdir(parents=True, exist_ok=True)
        summary = {
            "generator": "dymu-rt data synth", "version": __version__, "layout": layout,
            "seed": int(seed), "size": [h, w], "n_train": counts["train"], "n_val": counts["val"],
            "classes": list(NYU13_CLASSES if layout == "nyuv2" else PASCAL_CLASSES),
            "human_parts": list(HUMAN_PART_CLASSES) if layout == "pascal" else None,
            "depth": "z-distance in the camera frame, metres",
            "normals": "unit, camera frame (x right, y down, z forward), facing the camera",
            "scene_seeds": "image i of split s is drawn from numpy SeedSequence([seed, s, i]), "
                           "s = 0 train, 1 val",
            "ms_per_image": round(1000.0 * render_s / n, 3),
        }
        atomic_write_json(stage / "synth.json", summary)
        # Move into place: replace only what this layout writes, never other files.
        for entry in LAYOUT_ENTRIES[layout]:
            dst = out / entry
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
        for entry in LAYOUT_ENTRIES[layout]:
            if entry != "synth.json" and (stage / entry).exists():
                os.replace(stage / entry, out / entry)
        os.replace(stage / "synth.json", out / "synth.json")  # last: marks a complete run
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {**summary, "out": str(out), "previews": [str(out / "previews" / p) for p in preview_files]}


def read_synth_info(root) -> Optional[dict]:
    """The ``synth.json`` of a procedural dataset, or None for a real one."""
    p = Path(root) / "synth.json"
    return read_json(p, "synth.json") if p.is_file() else None
