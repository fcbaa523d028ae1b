"""``dymu-rt demo``."""

from cli.common import not_implemented


def demo_command() -> None:
    not_implemented("demo")
