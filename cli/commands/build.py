"""``dymu-rt build``."""

from cli.common import not_implemented


def build_command() -> None:
    not_implemented("build")
