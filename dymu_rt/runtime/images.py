"""The run-images use case: images at a preference (or a latency budget) -> per-task PNGs,
an overview PNG per image and a summary. What ``dymu-rt run`` prints, as a library call."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from dymu_rt.control.selector import static_refusal
from dymu_rt.errors import ValidationError
from dymu_rt.runtime.outputs import make_tasks, write_outputs
from dymu_rt.runtime.preprocess import load_image


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
               normalize: bool = False, percentile: str = "p50") -> dict[str, Any]:
    """Run each of ``files`` through Runtime ``rt`` at (r, c) — or at the smallest grid c whose
    measured latency at ``percentile`` (plus the switch cost to it) fits ``latency_budget``
    ms — and write its PNGs under ``out``.

    Returns the summary: topology, binding, grid_point, r, c, gmacs, gflops, macs,
    gflops_paper (the paper's fvcore count; None for older bundles), params,
    backend, latency_ms, profile, binding_mode, tier (what ran: "folded" once the second tier
    served, "instant" otherwise), budget_choice, images and outputs (task ->
    file for one image; a list of those, aligned with images, for several).
    """
    check_choice(c, latency_budget, rt.static, r, rt.root)
    choice = None
    if rt.static:
        rt.set_preference(r, None, normalize=normalize)
    elif latency_budget is not None:
        choice = rt.choose_for_budget(r, latency_budget, normalize=normalize, percentile=percentile,
                                      frames=max(1, len(files)))
        rt.set_preference(choice["r"], choice["c"])
    else:
        rt.set_preference(r, c, normalize=normalize)
    tasks = make_tasks(rt.tasks)
    results, stems = [], set()
    for i, f in enumerate(files):
        img = load_image(f)
        raw = rt.infer([img])
        stem = f.stem if f.stem not in stems else f"{f.stem}_{i}"
        stems.add(stem)
        results.append(write_outputs(img, {k: v[0] for k, v in raw.items()}, tasks, out, stem))
    s = rt.stats()
    return {"topology": s["topology"], "binding": s["binding"], "grid_point": s["grid_point"],
            "r": s["r"], "c": s["c"], "gmacs": s["gmacs"], "gflops": s["gflops"], "macs": s["macs"],
            "gflops_paper": s.get("gflops_paper"), "params": s["params"], "backend": s["backend"],
            "latency_ms": s["latency_ms"], "profile": s["profile"], "binding_mode": s["binding_mode"],
            "tier": s.get("tier"),
            "budget_choice": choice, "images": [str(f) for f in files],
            "outputs": results[0] if len(results) == 1 else results}
