"""INT8 calibration of a bundle: calibration sets, cached Q/DQ graphs per topology.

A *calibration set* is either a folder of images (PNG/JPEG/BMP/TIFF/WebP, read in sorted
order, converted to RGB, resized to the bundle's input size) or ``n`` procedural scenes
rendered by :class:`dymu_rt.data.synth.SynthDataset`. Either way it becomes the float32
[N, 3, H, W] batch the topology graphs take (``[0, 1]`` RGB; mean/std applied here only
when the bundle's graphs do not normalize inside), identified by the sha256 of exactly
those bytes — so the same pictures give the same identity wherever they come from.

Results are cached per topology under ``BUNDLE/calibration/<topology>/<key>/`` with
``key = sha256(graph sha256, set digest, method)[:16]``:

* ``ranges.json``    — ONNX Runtime's tensor-range calibration cache (the expensive part),
* ``int8.onnx``      — the Q/DQ graph (:func:`dymu_rt.backends.precision.quantize_int8`):
  symmetric int8 activations, the form TensorRT takes,
* ``int8-u8.onnx``   — the same ranges with asymmetric uint8 activations: ONNX Runtime's fast
  x86 path (U8S8), which the ONNX Runtime backend's INT8 mode runs on x86 (S8S8 runs slower
  than FP32 there; numbers in ``benchmarks/bench_precision.py``),
* ``meta.json``      — what went in (graph sha256, set, method) and both graphs' sha256.

A re-run with the same graph, images and method reuses both graphs untouched; a run with
another method or set adds a sibling key folder. The bundle manifest gains an ``int8``
section naming, per topology, the Q/DQ graphs in use (written last, through
:func:`dymu_rt.bundle.sections.update_manifest`; the section's readers, such as
:func:`~dymu_rt.bundle.sections.int8_graph`, live there too). The shipped default bundle is
package data and is refused (copy it first).
See ``calibration/README.md`` for the user-facing description.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from dymu_rt.backends.devices import load_profile
from dymu_rt.backends.precision import CALIBRATION_METHODS, ArrayReader, quantize_int8
from dymu_rt.bundle import layout as B
from dymu_rt.bundle import sections as S
from dymu_rt.bundle.layout import is_shipped_bundle
from dymu_rt.bundle.sections import CALIBRATION_DIR, cache_key
from dymu_rt.errors import ValidationError
from dymu_rt.utils.io import atomic_write_json, sha256_file
from dymu_rt.utils.progress import make_progress

#: activation type -> file name of its Q/DQ graph in a cache key folder
GRAPH_FILES = {"int8": "int8.onnx", "uint8": "int8-u8.onnx"}
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
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"--images {folder}: not a directory; expected a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValidationError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    h, w = size
    out = np.empty((len(files), 3, h, w), np.float32)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as e:
            raise ValidationError(f"--images: cannot read image {path} ({e})") from None
        out[i] = np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0
    return CalibrationSet(_normalize(out, preprocessing), {"kind": "images", "path": str(folder)})


def synth_set(n: int, size: tuple[int, int], seed: int = 0,
              preprocessing: Optional[Mapping] = None) -> CalibrationSet:
    """A calibration set of ``n`` procedural scenes (train split, rendered at ``size``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"--synth {n!r}: expected a number of scenes >= 1")
    from dymu_rt.data.synth import SynthDataset

    ds = SynthDataset(n, size=tuple(size), seed=seed)
    images = np.stack([ds[i]["image"].numpy() for i in range(n)]).astype(np.float32)
    return CalibrationSet(_normalize(images, preprocessing), {"kind": "synth", "n": n, "seed": seed})


def _valid_graph(path: Path, digest: Optional[str]) -> bool:
    return bool(digest) and path.is_file() and sha256_file(path) == digest


def calibrate_graph(graph: Path, graph_sha256: str, cache_root: Path, cset: CalibrationSet,
                    method: str, input_name: str = "image") -> dict[str, Any]:
    """Quantize one topology graph, reusing ``cache_root/<key>/`` when it holds the result.

    Writes the int8-activation graph (TensorRT form) and the uint8-activation one (ONNX
    Runtime x86) from one set of tensor ranges. Returns ``{"key", "dir", "file" (the int8
    Q/DQ graph), "sha256", "uint8_file", "uint8_sha256", "reused"}`` (``reused``: nothing
    had to be quantized).
    """
    if method not in CALIBRATION_METHODS:
        raise ValidationError(f"--method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    key = cache_key(graph_sha256, cset.digest, method)
    kdir = cache_root / key
    meta_path, ranges = kdir / "meta.json", kdir / "ranges.json"
    paths = {act: kdir / name for act, name in GRAPH_FILES.items()}
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}
    digests = {"int8": meta.get("int8_sha256"), "uint8": meta.get("uint8_sha256")}
    reused = True
    for act, path in paths.items():
        if _valid_graph(path, digests[act]):
            continue
        reused = False
        kdir.mkdir(parents=True, exist_ok=True)
        # The tensor ranges are computed once (first graph) and reused by the second.
        reader = None if ranges.is_file() else ArrayReader(cset.images, input_name)
        quantize_int8(graph, path, reader, method=method, cache_path=ranges, activations=act)
        digests[act] = sha256_file(path)
    if not reused:
        atomic_write_json(meta_path, {"graph_sha256": graph_sha256, "calibration": cset.describe(),
                                      "method": method, "int8_sha256": digests["int8"],
                                      "uint8_sha256": digests["uint8"]})
    return {"key": key, "dir": kdir, "file": paths["int8"], "sha256": digests["int8"],
            "uint8_file": paths["uint8"], "uint8_sha256": digests["uint8"], "reused": reused}


def _refuse_shipped(root: Path) -> None:
    if is_shipped_bundle(root):
        raise ValidationError(f"the shipped default bundle ({root}) is read-only package data; copy it first "
                              f"(cp -r {root} my-bundle) and run `dymu-rt calibrate my-bundle --synth 64`")


def calibrate_bundle(bundle: str | Path, images: str | Path | None = None, synth: Optional[int] = None,
                     method: str = "minmax", profile: Optional[str] = None, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Write an INT8 Q/DQ graph for every topology of ``bundle``; record them in the manifest.

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
    manifest = B.read_manifest(root)
    size = manifest.input_size
    pre = manifest.preprocessing
    cset = (image_folder_set(images, size, pre) if images is not None else synth_set(synth, size, seed, pre))
    files: dict[str, dict] = {}
    reused = 0
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("calibrating", total=len(manifest.topologies), info=method)
        for tid, entry in sorted(manifest.topologies.items()):
            B.check_file(root, entry.file, entry.sha256)
            res = calibrate_graph(root / entry.file, entry.sha256,
                                  root / CALIBRATION_DIR / tid, cset, method)
            reused += res["reused"]
            files[tid] = {"file": res["file"].relative_to(root).as_posix(), "sha256": res["sha256"],
                          "key": res["key"],
                          "uint8": {"file": res["uint8_file"].relative_to(root).as_posix(),
                                    "sha256": res["uint8_sha256"]}}
            bar.update(task, advance=1, info=f"{tid} ({'cached' if res['reused'] else 'quantized'})")
    record = {"method": method, "calibration": cset.describe(), "profile": prof.name if prof else None,
              "format": "onnx-qdq (int8 symmetric activations, per-channel int8 weights, float bias; "
                        "'uint8': the same ranges with asymmetric uint8 activations, ONNX Runtime x86)",
              "files": files}
    # Under the runtime's manifest lock, re-read: keep whatever other keys changed meanwhile.
    S.update_manifest(root, lambda doc: S.set_int8(doc, record))
    return {"bundle": str(root), "topologies": len(files), "quantized": len(files) - reused, "reused": reused,
            "method": method, "calibration": record["calibration"]}
