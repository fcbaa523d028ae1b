"""The CLI's one door to the library: every library name a command calls, imported when the
command first uses it (PEP 562, the same mechanism as ``dymu_rt.__init__``'s public API).

A command module does ``from dymu_rt.cli import library as lib`` at its top and calls
``lib.run_demo(...)`` in its body. So ``dymu-rt --help`` and ``dymu-rt X --help`` parse and
print without loading torch, onnxruntime or matplotlib, and no command hides an import inside
a function: the table below is the whole list, in one place. The ``TYPE_CHECKING`` block names
the same edges for readers, type checkers and ``lint-imports`` (the ``top`` contract sees
them); ``tests/cli/test_cli_library.py`` checks that the two agree, that every name resolves,
and that ``--help`` of every command stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: name -> module that defines it (imported on first use)
_DOOR = {
    # use cases (dymu_rt.app)
    "run_demo": "dymu_rt.app.demo",
    "check_bundle": "dymu_rt.app.check",
    "compare_runs": "dymu_rt.app.compare",
    "check_choice": "dymu_rt.app.run_images",
    "run_images": "dymu_rt.app.run_images",
    "describe": "dymu_rt.app.inspect",
    "describe_bundle": "dymu_rt.bundle.summary",
    # deploy wing (torch-free, but onnxruntime & co.: not needed to parse or print help)
    "Runtime": "dymu_rt.runtime",
    "default_bundle_path": "dymu_rt.runtime",
    "profile_rows": "dymu_rt.runtime.latency",
    "collect_images": "dymu_rt.runtime.preprocess",
    "is_shipped_bundle": "dymu_rt.bundle.layout",
    "read_manifest": "dymu_rt.bundle.layout",
    "static_section": "dymu_rt.bundle.layout",
    "list_profiles": "dymu_rt.backends.devices",
    "export_triton": "dymu_rt.serve.triton",
    "check_repository": "dymu_rt.serve.triton",
    # train wing (torch, matplotlib: the `train` extra)
    "write_synth_dataset": "dymu_rt.data.dataset_writer",
    "run_training": "dymu_rt.methods",
    "anchor_overrides": "dymu_rt.training.pipeline",
    "regularizer_overrides": "dymu_rt.training.pipeline",
    "edge_overrides": "dymu_rt.training.pipeline",
    "set_threads": "dymu_rt.training.common",
    "RunDir": "dymu_rt.run.layout",
    "method_for": "dymu_rt.methods",
    "evaluate_run": "dymu_rt.evaluate.report",
    "compare_markdown": "dymu_rt.evaluate.comparison",
    "plot_compare": "dymu_rt.evaluate.comparison",
    "plot_resource_map": "dymu_rt.evaluate.resource_map",
    "build_bundle": "dymu_rt.methods",
    "calibrate_bundle": "dymu_rt.compile.calibrate",
}

if TYPE_CHECKING:  # the same edges as _DOOR, for readers, type checkers and lint-imports
    from dymu_rt.app.check import check_bundle
    from dymu_rt.app.compare import compare_runs
    from dymu_rt.app.demo import run_demo
    from dymu_rt.app.inspect import describe
    from dymu_rt.bundle.summary import describe_bundle
    from dymu_rt.app.run_images import check_choice, run_images
    from dymu_rt.backends.devices import list_profiles
    from dymu_rt.bundle.layout import is_shipped_bundle, read_manifest, static_section
    from dymu_rt.compile.calibrate import calibrate_bundle
    from dymu_rt.data.dataset_writer import write_synth_dataset
    from dymu_rt.evaluate.comparison import compare_markdown, plot_compare
    from dymu_rt.evaluate.report import evaluate_run
    from dymu_rt.evaluate.resource_map import plot_resource_map
    from dymu_rt.runtime import Runtime, default_bundle_path
    from dymu_rt.runtime.latency import profile_rows
    from dymu_rt.runtime.preprocess import collect_images
    from dymu_rt.serve.triton import check_repository, export_triton
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.common import set_threads
    from dymu_rt.methods import build_bundle, method_for, run_training
    from dymu_rt.training.pipeline import anchor_overrides, edge_overrides, regularizer_overrides

__all__ = sorted(_DOOR)


def __getattr__(name: str):
    # Not cached: each use reads the defining module's attribute, so patching
    # dymu_rt.methods.build_bundle patches what the CLI calls.
    if name in _DOOR:
        return getattr(importlib.import_module(_DOOR[name]), name)
    raise AttributeError(f"module 'dymu_rt.cli.library' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_DOOR])
