"""``dymu-rt data``: procedural scenes (issue: foundation)."""

import typer

from cli.common import not_implemented

app = typer.Typer(no_args_is_help=True)


@app.command("synth")
def synth() -> None:
    """Render a procedural multi-task dataset in a real dataset's on-disk layout."""
    not_implemented("data synth")
