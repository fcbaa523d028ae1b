"""``dymu-rt plot``."""

from cli.common import not_implemented


def plot_command() -> None:
    not_implemented("plot")
