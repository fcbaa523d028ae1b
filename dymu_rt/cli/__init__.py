"""The ``dymu-rt`` command line: a thin Typer shell over :mod:`dymu_rt`.

Each command group lives in its own module under ``cli/commands``; heavy imports
(torch, onnxruntime) happen inside the command functions so ``--help`` stays fast.
"""
