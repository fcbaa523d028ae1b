"""Helpers shared by the command modules: console, JSON output, placeholders."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from dymu_rt.core.errors import NotImplementedYet

#: Width of tables and lines when stdout is not a terminal (a log, a pipe): wide enough that no
#: table is cut or wrapped (rich's default there is 80 columns, which cut topology ids and
#: preferences mid-value). Tables are sized to their content, so nothing is padded to this.
LOG_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(stderr=stderr) if tty else Console(stderr=stderr, width=LOG_WIDTH)


console = _console()
err_console = _console(stderr=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no rich markup, safe to pipe)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def not_implemented(command: str) -> None:
    """Placeholder for a command a later issue fills in: exits non-zero, never pretends."""
    raise NotImplementedYet(f"dymu-rt {command}: not implemented yet")
