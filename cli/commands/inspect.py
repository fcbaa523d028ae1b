"""``dymu-rt inspect``."""

from cli.common import not_implemented


def inspect_command() -> None:
    not_implemented("inspect")
