"""Helpers shared by the command modules: console, JSON output, placeholders."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from dymu_rt.errors import NotImplementedYet

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (no rich markup, safe to pipe)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def not_implemented(command: str) -> None:
    """Placeholder for a command a later issue fills in: exits non-zero, never pretends."""
    raise NotImplementedYet(f"dymu-rt {command}: not implemented yet")
