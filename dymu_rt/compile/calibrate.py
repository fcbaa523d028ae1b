"""INT8 calibration of a bundle: calibration sets, cached Q/DQ graphs per topology.

A *calibration set* is either a folder of images (PNG/JPEG/BMP/TIFF/WebP, read in sorted
order, converted to RGB, resized to the bundle's input size) or ``n`` procedural scenes
rendered by :class:`dymu_rt.data.synth.SynthDataset`. Either way it becomes the float32
[N, 3, H, W] batch the topology graphs take (``[0, 1]`` RGB; mean/std applied here only
when the bundle's graphs do not normalize inside), identified by the sha256 of exactly
those bytes — so the same pictures give the same identity wherever they come from.

Results are cached per topology under ``BUNDLE/calibration/<topology>/<key>/`` with
``key = sha256(graph sha256, weights sha256, fold-params sha256, set digest, method)[:16]``
— every input of the result: the graph holds only the structure, its tensors are in
``graphs/weights.bin`` and the raw conv weights and anchor BN feeds are derived from it and
``controller/fold_params.safetensors`` (schema 3), so a key without their checksums would
hand back ranges computed from corrupt weights after the weights are repaired. Every input
is verified before use (the whole manifest's schema and checksum, each graph's, the weight
file's and the fold parameters' sha256):

* ``ranges.json``    — ONNX Runtime's tensor-range calibration cache of the topology's
  *affine* graph (raw convs, BN scale/shift as inputs at the anchor: :mod:`dymu_rt.backends.int8_affine`),
* ``meta.json``      — what went in (graph sha256, set, method) and the ranges' sha256.

Store once (schema 3): no Q/DQ graph is stored. The ranges are the whole result of
calibration; the Q/DQ graphs are derived from them and the bundle's one copy of the weights
where they are used: the affine U8S8 graph by the ONNX Runtime backend at engine load
(:func:`dymu_rt.backends.int8_affine.affine_qdq_model`), the folded S8S8 graph by the
TensorRT builder (:func:`dymu_rt.backends.precision.quantize_int8` with these ranges: the
folded graph's tensors are a subset of the affine graph's). One calibration, one Q/DQ family.

A re-run with the same graph, images and method reuses the ranges untouched; a run with
another method or set adds a sibling key folder. The bundle manifest gains an ``int8``
section naming, per topology, the ranges in use (written last, through
:func:`dymu_rt.bundle.sections.update_manifest`; the section's reader is
:func:`~dymu_rt.bundle.sections.int8_ranges`). The shipped default bundle is package data
and is refused (copy it first).
See ``dymu_rt/calibration/README.md`` for the user-facing description.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from dymu_rt.backends.devices import load_profile
from dymu_rt.backends.int8_affine import anchor_feeds, calibrate_ranges
from dymu_rt.backends.precision import CALIBRATION_METHODS
from dymu_rt.bundle import layout as B
from dymu_rt.bundle import sections as S
from dymu_rt.bundle.layout import is_shipped_bundle
from dymu_rt.bundle.paths import inside
from dymu_rt.bundle.sections import CALIBRATION_DIR, cache_key
from dymu_rt.bundle.weight_pool import WeightPool, load_fold_params
from dymu_rt.core.bn_fold import slot_weights
from dymu_rt.core.errors import ValidationError
from dymu_rt.core.images import IMAGE_SUFFIXES, collect_images, load_image
from dymu_rt.core.io import atomic_write_json, sha256_file
from dymu_rt.utils.progress import make_progress

#: file name of the tensor ranges in a cache key folder
RANGES_FILE = "ranges.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class CalibrationSet:
    """Preprocessed calibration images ([N, 3, H, W] float32) and where they came from."""

    images: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """sha256 of the exact input bytes (shape included): the set's identity."""
        h = hashlib.sha256(json.dumps(list(self.images.shape)).encode())
        h.update(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-able record for the manifest."""
        return {**self.source, "count": int(len(self.images)), "digest": self.digest}


def _normalize(images: np.ndarray, preprocessing: Optional[Mapping]) -> np.ndarray:
    """Apply mean/std when the graphs expect normalized input (``normalize_in_graph`` false)."""
    if preprocessing is None or preprocessing.get("normalize_in_graph", True):
        return images
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(1, -1, 1, 1)
    return (images - mean) / std


def image_folder_set(folder: str | Path, size: tuple[int, int],
                     preprocessing: Optional[Mapping] = None) -> CalibrationSet:
    """A calibration set from every image file directly in ``folder`` (sorted by name)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"--images {folder}: not a directory; expected a folder of images")
    # run's loader and bomb guard: regular files only, pixel count checked in the header
    # before decoding, PIL's bomb errors and truncated files as one line.
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        raise ValidationError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    files = collect_images([folder])
    h, w = size
    out = np.empty((len(files), 3, h, w), np.float32)
    for i, path in enumerate(files):
        with load_image(path) as im:
            rgb = im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        out[i] = np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0
    return CalibrationSet(_normalize(out, preprocessing), {"kind": "images", "path": str(folder)})


def synth_set(n: int, size: tuple[int, int], seed: int = 0,
              preprocessing: Optional[Mapping] = None) -> CalibrationSet:
    """A calibration set of ``n`` procedural scenes (train split, rendered at ``size``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"--synth {n!r}: expected a number of scenes >= 1")
    # lazy: --synth needs torch (the train extra); `calibrate --images` runs on the base install
    from dymu_rt.data.synth import SynthDataset

    ds = SynthDataset(n, size=tuple(size), seed=seed)
    images = np.stack([ds[i]["image"].numpy() for i in range(n)]).astype(np.float32)
    return CalibrationSet(_normalize(images, preprocessing), {"kind": "synth", "n": n, "seed": seed})


def calibrate_graph(graph: Path, graph_sha256: str, cache_root: Path, cset: CalibrationSet, method: str,
                    pool, slots, feeds: Mapping[str, np.ndarray], weights_sha: str = "",
                    fold_sha: str = "") -> dict[str, Any]:
    """Calibrate one topology's affine graph, reusing ``cache_root/<key>/`` when it holds the result.

    ``pool`` is the bundle's :class:`~dymu_rt.bundle.weight_pool.WeightPool`, ``slots`` the
    topology's modulated BN slots and ``feeds`` their anchor BN scale/shift. ``weights_sha``
    and ``fold_sha``: the checksums of ``graphs/weights.bin`` and the fold parameters the
    pool derives the raw weights and the anchor feeds from (part of the cache key: every
    input of the result). Returns ``{"key", "dir", "ranges" (path), "sha256", "reused"}``.
    """
    if method not in CALIBRATION_METHODS:
        raise ValidationError(f"--method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    key = cache_key(graph_sha256, cset.digest, method, weights_sha, fold_sha)
    kdir = cache_root / key
    meta_path, ranges = kdir / "meta.json", kdir / RANGES_FILE
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}
    digest = meta.get("ranges_sha256")
    if digest and ranges.is_file() and sha256_file(ranges) == digest:
        return {"key": key, "dir": kdir, "ranges": ranges, "sha256": digest, "reused": True}
    kdir.mkdir(parents=True, exist_ok=True)
    calibrate_ranges(graph, pool, slots, feeds, cset.images, ranges, method)
    digest = sha256_file(ranges)
    atomic_write_json(meta_path, {"graph_sha256": graph_sha256, "weights_sha256": weights_sha,
                                  "fold_params_sha256": fold_sha, "calibration": cset.describe(), "method": method,
                                  "graph": "affine (raw convs; BN scale/shift inputs at the anchor)",
                                  "ranges_sha256": digest})
    return {"key": key, "dir": kdir, "ranges": ranges, "sha256": digest, "reused": False}


def _refuse_shipped(root: Path) -> None:
    if is_shipped_bundle(root):
        raise ValidationError(f"the shipped default bundle ({root}) is read-only package data; copy it first "
                              f"(cp -r {root} my-bundle) and run `dymu-rt calibrate my-bundle --synth 64`")


def calibrate_bundle(bundle: str | Path, images: str | Path | None = None, synth: Optional[int] = None,
                     method: str = "minmax", profile: Optional[str] = None, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Calibrate INT8 tensor ranges for every topology of ``bundle``; record them in the manifest.

    Exactly one of ``images`` (a folder) and ``synth`` (number of procedural scenes) gives
    the calibration set. ``profile``, when given, must be a profile with ``precision =
    "int8"``; it is recorded with the result. Returns a summary: topologies, quantized
    (this call), reused (from the cache), method, calibration set record.
    """
    if (images is None) == (synth is None):
        raise ValidationError("give exactly one calibration set: --images DIR or --synth N")
    if method not in CALIBRATION_METHODS:
        raise ValidationError(f"--method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    prof = None
    if profile is not None:
        prof = load_profile(profile)
        if prof.precision != "int8":
            raise ValidationError(f"--profile {prof.name}: has precision '{prof.precision}'; INT8 calibration "
                                  "is for profiles with precision = \"int8\"")
    root = Path(bundle)
    _refuse_shipped(root)
    # Every input of the INT8 graphs, verified before use: the manifest (schema, checksum),
    # each graph and the weight file (sha256), the graphs' external data (inside the bundle).
    manifest = B.read_manifest(root)
    B.check_folders(root)
    wsha = S.weights_sha256(manifest)
    if wsha:
        B.check_file(root, manifest.weights["file"], wsha)
    fsha = S.fold_params_sha256(manifest)
    if fsha:     # the raw conv weights and the anchor BN feeds are derived from it (schema 3)
        B.check_file(root, manifest.controller["fold_params"].file, fsha)
    for entry in manifest.topologies.values():
        B.check_file(root, entry.file, entry.sha256)
    B.verify_bundle(root, check_hashes=False)     # the rest: no links, nothing outside, anywhere
    size = manifest.input_size
    pre = manifest.preprocessing
    cset = (image_folder_set(images, size, pre) if images is not None else synth_set(synth, size, seed, pre))
    ctrl = manifest.controller
    fold_params = load_fold_params(root / ctrl["fold_params"].file) if "fold_params" in ctrl else {}
    pool = WeightPool(root, manifest.weights, fold_params, manifest.bn_eps)
    fold = pool.fold_params()
    zero = np.zeros(int(manifest.bn_delta_size), np.float32)
    files: dict[str, dict] = {}
    reused = 0
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("calibrating", total=len(manifest.topologies), info=method)
        for tid, entry in sorted(manifest.topologies.items()):
            cache_root = inside(root, f"{CALIBRATION_DIR}/{tid}", "calibration folder", must_exist=False)
            feeds = anchor_feeds(slot_weights(fold, manifest.bn_layout, zero, manifest.bn_eps, entry.bn_slots,
                                              "affine"))
            res = calibrate_graph(root / entry.file, entry.sha256, cache_root, cset, method,
                                  pool, entry.bn_slots, feeds, weights_sha=wsha, fold_sha=fsha)
            reused += res["reused"]
            files[tid] = {"key": res["key"],
                          "ranges": {"file": res["ranges"].relative_to(root).as_posix(), "sha256": res["sha256"]}}
            bar.update(task, advance=1, info=f"{tid} ({'cached' if res['reused'] else 'calibrated'})")
    record = {"method": method, "calibration": cset.describe(), "profile": prof.name if prof else None,
              "format": "ranges (ONNX Runtime calibration cache of the affine graph); Q/DQ graphs are derived "
                        "at use: ONNX Runtime the affine U8S8 graph, TensorRT the folded S8S8 graph",
              "files": files}
    # Under the runtime's manifest lock, re-read: keep whatever other keys changed meanwhile.
    S.update_manifest(root, lambda doc: S.set_int8(doc, record))
    return {"bundle": str(root), "topologies": len(files), "quantized": len(files) - reused, "reused": reused,
            "method": method, "calibration": record["calibration"]}
