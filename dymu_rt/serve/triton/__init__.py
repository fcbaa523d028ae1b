"""A bundle as a Triton Inference Server model repository (``dymu-rt export triton``).

:func:`export_triton` writes the repository (see :mod:`dymu_rt.serve.triton.export` for the
layout); :func:`check_repository` verifies it without a server.
"""

from dymu_rt.serve.triton.repository_check import check_repository
from dymu_rt.serve.triton.export import export_triton

__all__ = ["check_repository", "export_triton"]
