"""``dymu-rt plot``: a bundle's resource-usage map over the preference grid (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dymu_rt.cli.common import console


def plot_command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `dymu-rt build`."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default: BUNDLE/resource_map.png)."),
    panels: int = typer.Option(6, "--panels", min=1, help="At most this many c values (N = 3 tasks)."),
) -> None:
    """Draw GFLOPs (GMACs) of the selected tree over the (r, c) grid."""
    from dymu_rt.bundle.layout import read_manifest
    from dymu_rt.evaluate.resource_map import plot_resource_map
    from dymu_rt.core.errors import ValidationError

    manifest = read_manifest(bundle)
    if manifest.static:
        raise ValidationError(f"bundle {bundle} is a static {manifest.static.get('method', '')} bundle (one fixed "
                              "architecture): it has no preference grid to plot; `dymu-rt inspect` describes it")
    out = out or bundle / "resource_map.png"
    if out.suffix.lower() != ".png":
        raise ValidationError(f"--out {out}: expected a .png path")
    plot_resource_map(manifest.to_dict(), out, max_panels=panels)
    console.print(f"wrote {out}")
