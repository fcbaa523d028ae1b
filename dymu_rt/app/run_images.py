"""The run-images use case: images at a preference (or a latency budget) -> per-task PNGs,
an overview PNG per image, optionally the raw outputs (.npy), and a summary with honest
latency. What ``dymu-rt run`` prints, as a library call.

Latency is measured as ``trtexec`` and ``onnxruntime_perf_test`` do: the first inference
(cold: first run of the engine, with preprocessing) is reported on its own; then the first
image's batch runs ``warmup`` untimed and ``iters`` timed times through the call
``dymu-rt profile`` times (:meth:`Runtime.timed_call`), and a percentile is given only when
enough runs back it (:data:`dymu_rt.runtime.latency.MIN_RUNS`).

``out`` is never a place where a user's file is silently replaced: when a file of the name
an output would take exists in a folder dymu-rt did not write (no :data:`MARKER` in it),
the run is refused before anything is written, unless ``overwrite``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

from dymu_rt.core.selector import static_refusal
from dymu_rt.core.errors import ValidationError
from dymu_rt.runtime.latency import reportable, time_engine
from dymu_rt.runtime.outputs import make_tasks, output_names, raw_names, save_raw, write_outputs
from dymu_rt.runtime.preprocess import load_image
from dymu_rt.core.io import atomic_write_json, atomic_write_text

#: file dymu-rt leaves in a folder it wrote outputs to (lets a rerun replace its own files)
MARKER = ".dymu-rt-outputs"
#: the file describing the raw outputs in a --save-outputs folder
RAW_INDEX = "outputs.json"
#: defaults of `dymu-rt run`: enough timed runs for p50, p90 and p99 ...
DEFAULT_WARMUP, DEFAULT_ITERS = 10, 100
#: ... unless one call is slow: then about this much warm-up and timing (ms), at least
#: MIN_AUTO_ITERS timed runs (a p50), so a paper-scale model does not time for minutes
AUTO_WARMUP_MS, AUTO_TIMING_MS, MIN_AUTO_ITERS = 1000.0, 3000.0, 5


def auto_counts(one_ms: float, warmup: Optional[int], iters: Optional[int]) -> tuple[int, int]:
    """(warmup, iters) for a call of ``one_ms``: the given ones, or for None the defaults
    capped to ~AUTO_WARMUP_MS / ~AUTO_TIMING_MS of work (at least 1 warm-up, MIN_AUTO_ITERS runs)."""
    one = max(float(one_ms), 1e-3)
    w = warmup if warmup is not None else min(DEFAULT_WARMUP, max(1, int(AUTO_WARMUP_MS / one)))
    n = iters if iters is not None else min(DEFAULT_ITERS, max(MIN_AUTO_ITERS, int(AUTO_TIMING_MS / one)))
    return w, n


def output_stems(files: Sequence[Path]) -> list[str]:
    """One file-name stem per image (a repeated stem gets the image's index)."""
    stems, seen = [], set()
    for i, f in enumerate(files):
        stem = f.stem if f.stem not in seen else f"{f.stem}_{i}"
        seen.add(stem)
        stems.append(stem)
    return stems


def check_out_dir(folder: Path, names: Sequence[str], option: str, overwrite: bool) -> None:
    """Refuse (one line) to write into ``folder`` where a file of one of ``names`` exists and
    dymu-rt did not write the folder (no :data:`MARKER`), unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{option} {folder}: exists and is not a folder; expected a folder for the outputs")
    if overwrite or not folder.is_dir() or (folder / MARKER).is_file():
        return
    clash = [n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
    if clash:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise ValidationError(f"{option} {folder}: {folder / clash[0]} already exists{more} and this folder was "
                              "not written by dymu-rt; choose another folder or pass --overwrite to replace them")


def _mark(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).is_file():
        atomic_write_text(folder / MARKER, "outputs written by dymu-rt run; a rerun may replace them\n")


def check_choice(c, latency_budget, static: Optional[dict] = None, r=None, bundle=None) -> None:
    """Exactly one of a resource preference ``c`` and a latency budget, and an r (checked before
    any work). A ``static`` bundle (its manifest's ``static`` section: AdaShare / DAG) takes
    neither: it has no resource control; its r is accepted and ignored."""
    if static is not None:
        if c is not None or latency_budget is not None:
            flag = "--c" if c is not None else "--latency-budget"
            raise static_refusal(bundle, static.get("method"),
                                 f"so {flag} cannot be honoured; omit it (--r is accepted and ignored)")
        return
    if (c is None) == (latency_budget is None):
        raise ValidationError("give exactly one of --c (resource preference in [0, 1]) or --latency-budget MS")
    if r is None:
        raise ValidationError("missing option --r (task preference, e.g. 0.6,0.2,0.2)")


def run_images(rt, files: Sequence[Path], out: Path, r, c=None, latency_budget: Optional[float] = None,
               normalize: bool = False, percentile: str = "p50", warmup: Optional[int] = None,
               iters: Optional[int] = None, save_outputs: Optional[Path] = None,
               overwrite: bool = False) -> dict[str, Any]:
    """Run each of ``files`` through Runtime ``rt`` at (r, c) — or at the smallest grid c whose
    measured latency at ``percentile`` (plus the switch cost to it) fits ``latency_budget``
    ms — and write its PNGs (at each image's size) under ``out``; with ``save_outputs``, the
    raw outputs as .npy there, described by its ``outputs.json``. Then time the first image:
    ``warmup`` untimed and ``iters`` timed runs (``iters`` 0: no steady-state timing; None:
    :func:`auto_counts`, 10 and 100 unless one call is slow).

    Returns the summary: topology, binding, grid_point, r, c, gmacs, gflops, macs,
    gflops_paper (the paper's fvcore count; None for older bundles), params, backend,
    latency_ms ({setup_ms: set_preference (engine load + binding), cold_ms: the first
    inference, warmup, count, mean_ms, std_ms, p50_ms, p90_ms, p99_ms (None when too few
    runs), timed}), profile, binding_mode, tier (what ran: "folded" once the second tier
    served, "instant" otherwise), budget_choice, images, outputs (task -> file for
    one image; a list of those, aligned with images, for several) and raw_outputs (the
    index file, or None).
    """
    check_choice(c, latency_budget, rt.static, r, rt.root)
    for name, v, lo in (("--warmup", warmup, 0), ("--iters", iters, 0)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < lo):
            raise ValidationError(f"{name} = {v!r}; expected an integer >= {lo}")
    tasks = make_tasks(rt.tasks)
    stems = output_stems(files)
    check_out_dir(out, [n for s in stems for n in output_names(s, tasks)], "--out", overwrite)
    if save_outputs is not None:
        check_out_dir(save_outputs, [n for s in stems for n in raw_names(s, tasks)] + [RAW_INDEX],
                      "--save-outputs", overwrite)
    choice = None
    t0 = time.perf_counter()
    if rt.static:
        rt.set_preference(r, None, normalize=normalize)
    elif latency_budget is not None:
        choice = rt.choose_for_budget(r, latency_budget, normalize=normalize, percentile=percentile,
                                      frames=max(1, len(files)))
        rt.set_preference(choice["r"], choice["c"])
    else:
        rt.set_preference(r, c, normalize=normalize)
    setup_ms = 1e3 * (time.perf_counter() - t0)
    results, raw_rows, cold_ms, first = [], [], None, None
    for f, stem in zip(files, stems):
        img = load_image(f)
        t0 = time.perf_counter()
        raw = rt.infer([img])
        if cold_ms is None:
            cold_ms, first = 1e3 * (time.perf_counter() - t0), img
        one = {k: v[0] for k, v in raw.items()}
        _mark(Path(out))
        if save_outputs is not None:
            _mark(Path(save_outputs))
        results.append(write_outputs(img, one, tasks, out, stem))
        if save_outputs is not None:
            raw_rows += save_raw(img, one, tasks, save_outputs, stem, str(f))
    index = None
    if save_outputs is not None:
        index = Path(save_outputs) / RAW_INDEX
        atomic_write_json(index, {"written_by": "dymu-rt run", "topology": rt.stats()["topology"],
                                  "files": raw_rows})
    latency: dict[str, Any] = {"setup_ms": setup_ms, "cold_ms": cold_ms, "warmup": 0, "count": 0,
                               "mean_ms": None, "std_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
                               "timed": "one engine call at batch 1 on the first image after warm-up "
                                        "(what `dymu-rt profile` times; no preprocessing)"}
    if iters != 0:
        call, _ = rt.timed_call(rt.preprocess([first]))
        t0 = time.perf_counter()
        call()                                  # one probe run (the first warm-up) sizes the defaults
        w, n = auto_counts(1e3 * (time.perf_counter() - t0), warmup, iters)
        latency.update(reportable(time_engine(call, n, max(0, w - 1))))
        latency["warmup"] = w
    s = rt.stats()
    return {"topology": s["topology"], "binding": s["binding"], "grid_point": s["grid_point"],
            "r": s["r"], "c": s["c"], "gmacs": s["gmacs"], "gflops": s["gflops"], "macs": s["macs"],
            "gflops_paper": s.get("gflops_paper"), "params": s["params"], "backend": s["backend"],
            "latency_ms": latency, "profile": s["profile"], "binding_mode": s["binding_mode"],
            "tier": s.get("tier"),
            "budget_choice": choice, "images": [str(f) for f in files],
            "outputs": results[0] if len(results) == 1 else results,
            "raw_outputs": None if index is None else str(index)}
