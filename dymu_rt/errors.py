"""Errors a user can cause.

Anything derived from :class:`DymuError` is reported by the CLI as one line (no
traceback) and a non-zero exit; every other exception is a bug and keeps its
traceback. Messages name the bad value and what was expected.
"""


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
