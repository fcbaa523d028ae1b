"""``dymu-rt profiles``: list the shipped device profiles."""

from __future__ import annotations

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json


def profiles_command(
    as_json: bool = typer.Option(False, "--json", help="Print the profiles as JSON."),
) -> None:
    """List the device profiles: name, backend, precision, threads, batch range, description."""
    profs = lib.list_profiles()
    if as_json:
        print_json([p.to_dict() for p in profs])
        return

    t = Table(title="device profiles (use with --profile NAME, or pass a .toml path)")
    for col in ("name", "backend", "precision", "threads", "batch", "description"):
        t.add_column(col, no_wrap=col in ("name", "backend", "batch"))
    for p in profs:
        t.add_row(p.name, p.backend, p.precision, "all" if p.threads == 0 else str(p.threads),
                  f"{p.batch_min}-{p.batch_max} (opt {p.batch_opt})", p.description)
    console.print(t)
