"""The ``dymu-rt`` command line: a thin Typer shell over :mod:`dymu_rt`.

Each command group lives in its own module under ``cli/commands``: its arguments, and what it
prints. The library is reached through one door, :mod:`dymu_rt.cli.library`, which imports a
name when a command first calls it, so ``--help`` stays fast and torch-free.
"""
