"""``dymu-rt eval``."""

from cli.common import not_implemented


def eval_command() -> None:
    not_implemented("eval")
