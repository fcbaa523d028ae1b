"""Errors a user can cause.

Anything derived from :class:`DymuError` is reported by the CLI as one line (no
traceback) and a non-zero exit; every other exception is a bug and keeps its
traceback. Messages name the bad value and what was expected.
"""

from __future__ import annotations


class DymuError(Exception):
    """Base of every user-facing error (bad input, bad file, bad environment)."""

    exit_code = 2


class ValidationError(DymuError, ValueError):
    """A value given by the user (preference, option, profile key) is invalid."""


class DataError(DymuError):
    """A dataset on disk is missing, malformed or inconsistent."""


class CheckpointError(DymuError):
    """A checkpoint is missing, corrupt or does not match the preset."""


class BundleError(DymuError):
    """A bundle is missing, corrupt, too new, or built for another backend/device."""


class BackendUnavailable(DymuError):
    """A backend (e.g. TensorRT) or the device it needs is not present on this machine."""


class NotImplementedYet(DymuError):
    """A command that a later issue implements."""

    exit_code = 3


#: Modules the ``[train]`` extra installs (training, evaluation, building); the base install
#: (``pip install dymu-rt``) runs bundles without them.
TRAIN_EXTRA_MODULES = ("torch", "onnx", "onnx_graphsurgeon", "onnxscript", "scipy", "matplotlib")


def missing_extra(error: ImportError) -> str | None:
    """One line naming the extra to install when ``error`` is a missing ``[train]`` module, else None."""
    root = (getattr(error, "name", None) or "").split(".")[0]
    if root not in TRAIN_EXTRA_MODULES:
        return None
    return (f"this needs {root}, which the base install leaves out; install the training extra: "
            'pip install "dymu-rt[train]"')
