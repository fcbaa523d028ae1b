"""One style of rich progress bar for every long operation."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(transient: bool = False, disable: bool = False) -> Progress:
    """A rich ``Progress`` with description, bar, n/total, elapsed and ETA columns.

    ``disable=True`` (e.g. for tests or ``--json`` output) renders nothing.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
        disable=disable,
    )
