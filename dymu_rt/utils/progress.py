"""One style of rich progress bar for every long operation.

Bars are drawn only on a terminal: when stdout goes to a file or a pipe (a CI log, ``| tee``)
a bar's redraws would land in the log as garbage, so it renders nothing there.
"""

from __future__ import annotations

import sys

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

    ``disable=True`` (e.g. for tests or ``--json`` output) renders nothing; neither does a bar
    whose stdout is not a terminal.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
        disable=disable or not stdout_is_terminal(),
    )


def stdout_is_terminal() -> bool:
    """Whether stdout is an interactive terminal (not a file, a pipe or a CI log)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):     # replaced or closed stdout
        return False
