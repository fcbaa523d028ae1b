"""``dymu-rt plot``: a bundle's resource-usage map over the preference grid (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console
from dymu_rt.core.errors import ValidationError


def plot_command(
    bundle: Path = typer.Argument(..., help="Bundle directory written by `dymu-rt build`."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default: BUNDLE/resource_map.png)."),
    panels: int = typer.Option(6, "--panels", min=1, help="At most this many c values (N = 3 tasks)."),
) -> None:
    """Draw GFLOPs (GMACs) of the selected tree over the (r, c) grid."""
    manifest = lib.read_manifest(bundle)
    if manifest.static:
        raise ValidationError(f"bundle {bundle} is a static {manifest.static.get('method', '')} bundle (one fixed "
                              "architecture): it has no preference grid to plot; `dymu-rt inspect` describes it")
    out = out or bundle / "resource_map.png"
    if out.suffix.lower() != ".png":
        raise ValidationError(f"--out {out}: expected a .png path")
    lib.plot_resource_map(manifest.to_dict(), out, max_panels=panels)
    console.print(f"wrote {out}")
