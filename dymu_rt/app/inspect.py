"""What ``dymu-rt inspect`` reports: a preset, a run directory or a bundle, as plain dicts.

Costs follow :mod:`dymu_rt.models.cost`: ``gmacs`` = conv + linear multiply-accumulates /
1e9, ``gflops`` = 2 × MACs / 1e9, ``gflops_paper`` = the paper's "GFLOPs" (fvcore's count).

A bundle is described without torch (the base install inspects bundles); presets and run
directories need torch (the training extra) and are described by
:mod:`dymu_rt.app.inspect_model`, which :func:`describe` loads only for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dymu_rt.bundle.layout import MANIFEST
from dymu_rt.bundle.summary import describe_bundle
from dymu_rt.core.errors import ValidationError


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``512x512``) as (H, W); a ValidationError names the value otherwise."""
    parts = str(text).lower().split("x")
    try:
        h, w = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        h = w = None
    if h is None or not (16 <= h <= 4096 and 16 <= w <= 4096):
        raise ValidationError(f"--size '{text}': expected HxW with 16 <= H, W <= 4096 (e.g. 512x512)")
    return h, w


def describe(target: str, size: str | None = None) -> dict[str, Any]:
    """Describe ``target``: a bundle directory, a run directory, or a preset name.

    ``size`` ("HxW") costs a preset's or run's anchor at that input size; a bundle's costs
    are fixed at its input size.
    """
    hw = parse_size(size) if size is not None else None
    p = Path(target)
    if p.is_dir() and (p / MANIFEST).is_file():
        if hw is not None:
            raise ValidationError("--size applies to a preset or a run; a bundle's costs are "
                                  "those of its input size")
        return describe_bundle(p)                   # torch-free: the base install inspects bundles
    # lazy: presets and runs need torch (the train extra); a bundle is inspected without it
    from dymu_rt.app.inspect_model import describe_model

    return describe_model(target, hw)
