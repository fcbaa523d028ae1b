"""``dymu-rt profiles``."""

from cli.common import not_implemented


def profiles_command() -> None:
    not_implemented("profiles")
