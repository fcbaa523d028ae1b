"""``dymu-rt profile``."""

from cli.common import not_implemented


def profile_command() -> None:
    not_implemented("profile")
