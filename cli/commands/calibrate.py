"""``dymu-rt calibrate``."""

from cli.common import not_implemented


def calibrate_command() -> None:
    not_implemented("calibrate")
