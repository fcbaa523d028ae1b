"""``dymu-rt run``."""

from cli.common import not_implemented


def run_command() -> None:
    not_implemented("run")
