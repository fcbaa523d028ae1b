"""``dymu-rt train``: anchor net and hypernets."""

import typer

from cli.common import not_implemented

app = typer.Typer(no_args_is_help=True)


@app.command("anchor")
def anchor() -> None:
    """Train each stream of the anchor net on its own task."""
    not_implemented("train anchor")


@app.command("controller")
def controller() -> None:
    """Train the edge hypernet (stage 1) and the weight hypernet (stage 2)."""
    not_implemented("train controller")
