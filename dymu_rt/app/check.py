"""``dymu-rt check``: is this bundle safe to ship? Every backend/precision against FP32.

A Polygraphy-style comparison a deployment engineer runs before shipping. For ``points``
sampled grid points (spread over the bundle's topologies, deterministic), every available
*contender* runs the same labelled procedural scenes (``dymu_rt.data.synth``, split ``val``)
and is compared with the *reference* of the same point:

* reference: ONNX Runtime FP32 with ``session`` binding (the folded graph with the point's
  BN-folded weights written into it: the plain math of docs/INTERFACES.md "Binding");
* contenders: ONNX Runtime FP32 with the runtime's default binding (``affine``), ONNX Runtime
  INT8 when the bundle is calibrated, each in both tiers (docs/runtime-tiers.md: the folded
  engine of the steady state, named as the contender, and ``<name> instant tier``, what
  serves right after a switch), and the backend/precision of ``profile`` when given
  (e.g. TensorRT FP16/INT8 on a GPU profile, OpenVINO FP32/BF16/INT8 on an x86 CPU); a
  contender that cannot run here (no calibration, no TensorRT/GPU, no openvino package, no
  BF16 in the CPU) is listed as skipped with the reason, not failed.

Per task output: max absolute and max relative error (Polygraphy's comparator,
``SimpleCompareFunc`` with ``atol``/``rtol``, when the optional ``polygraphy`` package is
installed; the same element-wise rule in numpy otherwise: an element passes when
``|a - b| <= atol`` or ``|a - b| / |b| <= rtol``), and the change of the task's metric on
the scenes' labels against the reference's: at most −1 mIoU (segmentation, parts), +2 %
relative depth abs error, +1° mean normal error (other kinds: their primary metric within
1 point). Any output over tolerance or metric over its limit is a *violation*.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from dymu_rt.backends.devices import with_threads
from dymu_rt.bundle.manifest import Point
from dymu_rt.core.errors import BundleError, DymuError, ValidationError
from dymu_rt.core.kinds import LABELLED_KINDS
from dymu_rt.evaluate.scenes import labelled_scenes, score
from dymu_rt.runtime import Runtime
from dymu_rt.tasks import make_task     # the task meters need torch (the [train] extra)
from dymu_rt.utils.progress import make_progress

#: element-wise tolerances per precision (``--atol/--rtol`` override them for every contender).
#: FP32 vs FP32 differ by summation order only; FP16/BF16/INT8 outputs are judged mainly by the
#: task metrics below, their element-wise bounds only catch gross breakage (BF16 keeps 8 mantissa
#: bits to FP16's 11: OpenVINO bf16 measured 0.5-1.5 % of each output's range on the fixtures) —
#: which needs rtol < 1: with rtol = 1 an all-zero output passes every element (|0 - b| / |b| = 1).
DEFAULT_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (0.1, 0.1), "bf16": (0.25, 0.25), "int8": (1.0, 0.5)}

#: task kind -> (metric, allowed change in the bad direction, relative?)
METRIC_LIMITS = {"segmentation": ("miou", 1.0, False), "parts": ("miou", 1.0, False),
                 "depth": ("abs_err", 0.02, True), "normals": ("mean", 1.0, False)}


@dataclasses.dataclass
class OutputCompare:
    """One task output of one contender at one point, against the reference."""

    task: str
    max_abs: float
    max_rel: float
    passed: bool


@dataclasses.dataclass
class ContenderResult:
    """One contender at one grid point."""

    contender: str
    point: dict
    topology: str
    outputs: list[OutputCompare]
    metrics: dict[str, dict[str, float]]          # task -> {metric, reference, value, change, limit, passed}
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and all(m["passed"] for m in self.metrics.values())


@dataclasses.dataclass
class CheckReport:
    """Everything ``dymu-rt check`` found; ``passed`` is False on any violation."""

    bundle: str
    scenes: int
    comparator: str
    results: list[ContenderResult]
    skipped: dict[str, str]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "passed": self.passed, "scenes": self.scenes, "comparator": self.comparator,
                "skipped": self.skipped,
                "results": [{**dataclasses.asdict(r), "passed": r.passed} for r in self.results]}


def _compare(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], atol: float, rtol: float):
    """Per-output (max abs, max rel, passed): Polygraphy's comparator when installed."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from polygraphy.comparator import Comparator, RunResults
            from polygraphy.comparator.compare import SimpleCompareFunc
            from polygraphy.comparator.struct import IterationResult
            from polygraphy.logger import G_LOGGER
    except ImportError:
        out = {}
        for k, b in ref.items():
            a = np.asarray(got[k], np.float64)
            b = np.asarray(b, np.float64)
            diff = np.abs(a - b)
            rel = diff / np.maximum(np.abs(b), np.finfo(np.float32).tiny)
            out[k] = (float(diff.max()), float(rel.max()), bool(((diff <= atol) | (rel <= rtol)).all()))
        return out, "numpy"
    G_LOGGER.module_severity = G_LOGGER.CRITICAL
    runs = RunResults([("reference", [IterationResult(dict(ref), runner_name="reference")]),
                       ("contender", [IterationResult(dict(got), runner_name="contender")])])
    acc = Comparator.compare_accuracy(runs, compare_func=SimpleCompareFunc(atol=atol, rtol=rtol))
    (per_iter,) = acc[0].values()
    return {k: (float(r.max_absdiff), float(r.max_reldiff), bool(r)) for k, r in per_iter[0].items()}, "polygraphy"


def _metric_change(task, ref_value: float, value: float) -> dict[str, Any]:
    metric, limit, relative = METRIC_LIMITS.get(task.kind, (task.primary_metric, 1.0, False))
    higher = task.metric_directions[metric]
    change = value - ref_value
    worse = -change if higher else change
    allowed = limit * abs(ref_value) if relative else limit
    return {"metric": metric, "reference": ref_value, "value": value, "change": change,
            "limit": (f"-{limit}" if higher else (f"+{100 * limit:g}%" if relative else f"+{limit}")),
            "passed": bool(worse <= allowed + 1e-12 or not math.isfinite(worse))}


def sample_points(points, n: int) -> list:
    """``n`` of the grid ``points`` (``Manifest.points``), one per topology first (most
    frequent topologies first), deterministic."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"--points {n!r}: expected a number of grid points >= 1")
    by_topo: dict[str, list] = {}
    for p in points:
        by_topo.setdefault(p.topology, []).append(p)
    order = sorted(by_topo, key=lambda t: (-len(by_topo[t]), t))
    out, rank = [], 0
    while len(out) < n and rank < max(len(v) for v in by_topo.values()):
        for t in order:
            if len(out) < n and rank < len(by_topo[t]):
                pts = by_topo[t]
                out.append(pts[(rank * 7919) % len(pts)] if rank else pts[len(pts) // 2])
        rank += 1
    return out


def _scenes(manifest, n: int, seed: int):
    """Preprocessed images [n, 3, H, W] and per-task labels (targets, masks) as torch tensors."""
    return labelled_scenes(manifest.input_size, manifest.task_names, manifest.preprocessing, n, seed)


def _score(tasks, outputs: Mapping[str, np.ndarray], targets, masks) -> dict[str, float]:
    return score(tasks, outputs, targets, masks, {k: v[0] for k, v in METRIC_LIMITS.items()})


def _infer_all(rt, images: np.ndarray, name: str = "ort fp32 reference", where: str = "") -> dict[str, np.ndarray]:
    """Every image through ``rt``, ``batch_max`` at a time. An engine that fails while it runs
    (an ONNX Runtime / OpenVINO / TensorRT exception) is one BundleError naming the contender,
    the preference and the engine's first line, not a traceback."""
    step = max(1, int(getattr(rt.profile, "batch_max", 1) or 1))
    try:
        parts = [rt.infer(images[i:i + step]) for i in range(0, len(images), step)]
    except DymuError:
        raise
    except Exception as e:          # the engines' own exception types (pybind, RuntimeError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise BundleError(f"check: {name}{where} failed in its engine at batch {min(step, len(images))}: "
                          f"{type(e).__name__}: {first}") from e
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _contenders(bundle: Path, manifest, profile: Optional[str], threads: int):
    """(name, precision, Runtime) of every contender that opens here, and {name: reason} skipped."""
    opened, skipped = [], {}
    wanted = [("ort fp32", "x86-64-cpu", None)]
    if manifest.int8:
        wanted.append(("ort int8", "x86-64-cpu-int8", None))
    else:
        skipped["ort int8"] = f"not calibrated (run `dymu-rt calibrate {bundle} --synth 64`)"
    if profile is not None:
        wanted.append((f"profile {profile}", profile, None))
    for name, prof, binding in wanted:
        try:
            # Both tiers are checked (docs/runtime-tiers.md): the steady state, each preference's
            # folded engine, and the instant tier that serves right after a switch.
            rt = Runtime.open(bundle, profile=with_threads(prof, threads), binding=binding, cache_engines=False,
                              second_tier="sync")
        except DymuError as e:
            if name.startswith("profile "):
                skipped[name] = str(e)
                continue
            raise
        opened.append((name, rt.profile.precision, rt))
        if rt.second_tier != "off":
            instant = Runtime.open(bundle, profile=with_threads(prof, threads), binding=binding, cache_engines=False,
                                   second_tier="off")
            opened.append((f"{name} instant tier", instant.profile.precision, instant))
    return opened, skipped


def check_bundle(bundle, profile: Optional[str] = None, points: int = 3, scenes: int = 4,
                 atol: Optional[float] = None, rtol: Optional[float] = None, seed: int = 0,
                 threads: int = 0, progress: bool = True) -> CheckReport:
    """Compare every available backend/precision with the FP32 reference (module docstring).

    ``atol``/``rtol`` override :data:`DEFAULT_TOLERANCE` for every contender. Returns a
    :class:`CheckReport`; the caller decides what a violation means (the CLI exits 1).
    """
    for name, v in (("--atol", atol), ("--rtol", rtol)):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValidationError(f"{name} {v!r}: expected a number >= 0")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValidationError(f"--threads {threads!r}: expected an integer >= 0 (0 = all cores)")
    root = Path(bundle)
    ref = Runtime.open(root, profile=with_threads("x86-64-cpu", threads), binding="session", cache_engines=False)
    manifest = ref.manifest
    # A static (AdaShare / DAG) bundle has no grid: its one architecture is checked once,
    # at uniform r (accepted and ignored) and no c (which it refuses).
    pts = (sample_points(manifest.points, points) if not manifest.static else
           [Point(tuple(1.0 / len(manifest.tasks) for _ in manifest.tasks), None, next(iter(manifest.topologies)))])
    images, targets, masks = _scenes(manifest, scenes, seed)
    tasks = [make_task(t.kind, t.name, num_classes=t.out_channels if t.kind in LABELLED_KINDS else None)
             for t in manifest.tasks]
    contenders, skipped = _contenders(root, manifest, profile, threads)
    results: list[ContenderResult] = []
    comparator = "numpy"
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("check", total=len(pts) * (1 + len(contenders)), info="")
        for p in pts:
            info = ref.set_preference(p.r, p.c)
            where = f" at r={','.join(f'{x:g}' for x in p.r)}; c={p.c} (topology {info['topology']})"
            want = _infer_all(ref, images, where=where)
            ref_metrics = _score(tasks, want, targets, masks)
            bar.update(task, advance=1, info=f"reference {info['topology']}")
            for name, precision, rt in contenders:
                rt.set_preference(p.r, p.c)
                got = _infer_all(rt, images, name, where)
                a, r = DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["fp32"])
                a, r = (a if atol is None else float(atol)), (r if rtol is None else float(rtol))
                cmp, comparator = _compare(want, got, a, r)
                values = _score(tasks, got, targets, masks)
                results.append(ContenderResult(
                    contender=name, point={"r": list(p.r), "c": p.c}, topology=info["topology"],
                    outputs=[OutputCompare(k, *cmp[k]) for k in want],
                    metrics={t.name: _metric_change(t, ref_metrics[t.name], values[t.name]) for t in tasks},
                    atol=a, rtol=r))
                bar.update(task, advance=1, info=f"{name} {info['topology']}")
    for _, _, rt in contenders:
        rt.close()
    ref.close()
    return CheckReport(str(root), scenes, comparator, results, skipped)
