"""dymu_rt.methods: the multi-task methods as plugins (issue 26). Train wing, on top of it
(``.importlinter``: methods > compile > evaluate > train > ...).

Each family is one module that registers its methods with :func:`register_method`:

* ``dymu``       DYMU (grid bundle: topologies per preference + controller)
* ``adashare``   AdaShare (static bundle)
* ``dag``        the DAG network, flow constant M (static bundle)
* ``baselines``  single-task, PHN-BN, retrained trees: rows ``dymu-rt compare`` derives from a
  DYMU run (static bundles; no run of their own)

A :class:`Method` supplies its trainer (:meth:`Method.train`, and the checks and config of a
new run), its lowering to the architecture IR the build writes (:meth:`Method.lower`), its
bundle kind (``bundle``: grid or static) and its evaluation rows (:meth:`Method.rows`,
:meth:`Method.label`, :meth:`Method.budget`). The doors below are what the rest of the
product calls; no module outside this package compares a method's name
(``tests/methods/test_registry.py`` scans for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from dymu_rt.backends.registry import DEFAULT_BACKEND
from dymu_rt.compile.build import check_request, write_bundle
from dymu_rt.methods._registry import Method, family_of, get_method, method_names, register_method
from dymu_rt.methods import baselines, dymu, adashare, dag  # noqa: F401  (registers the methods, in table order)
from dymu_rt.training import pipeline
from dymu_rt.run.layout import RunDir, method_of


def method_for(run) -> Method:
    """The method ``run`` (a RunDir, or a run folder) was trained with."""
    run = run if hasattr(run, "read_config") else RunDir(run)
    return get_method(method_of(run), flag=f"run {run.path}: method")


def build_bundle(run_dir, out, step: str | float = "0.1", c_step: str | float | None = None,
                 backend: str = DEFAULT_BACKEND, profile: Optional[str] = None, workers: int = 1,
                 progress: bool = True, on_topology=None) -> dict[str, Any]:
    """Build the bundle of a trained run: its method lowers it (a DYMU run over the preference
    grid ``step`` / ``c_step``; an AdaShare / DAG run to its one architecture, the grid
    ignored) and :func:`dymu_rt.compile.build.write_bundle` writes it. Returns the build's
    summary dict (see there)."""
    check_request(backend, profile, workers)              # a bad request: refused before the run is read
    run = RunDir(Path(run_dir))
    lowered = method_for(run).lower(run, step, c_step)
    return write_bundle(lowered, out, backend=backend, profile=profile, workers=workers, progress=progress,
                        on_topology=on_topology)


def open_run(out, preset: Optional[str], data: Optional[str], overrides: Optional[dict] = None,
             seed: Optional[int] = None, n_train: Optional[int] = None, n_val: Optional[int] = None,
             method: str = dymu.Dymu.name, flow: Optional[int] = None) -> RunDir:
    """:func:`dymu_rt.training.pipeline.open_run` for the method named ``method``."""
    return pipeline.open_run(out, preset, data, overrides, seed, n_train, n_val, _hooks(method), flow)


def train(run: RunDir, stages: str = "all", **kw) -> dict:
    """Train ``run`` with its own method's trainer (keywords: :func:`dymu_rt.training.pipeline.train`'s)."""
    return method_for(run).train(run, stages, **kw)


def run_training(out, stages: str, *args, method: str = dymu.Dymu.name, **kw) -> dict:
    """``dymu-rt train``'s whole job (:func:`dymu_rt.training.pipeline.run_training`) for the
    method named ``method`` (an unknown name: one ValidationError listing the known ones)."""
    return pipeline.run_training(out, stages, *args, method=_hooks(method), **kw)


def _hooks(name: str) -> Optional[Method]:
    """What the pipeline takes: None for DYMU (its own stages), else the method object."""
    m = get_method(name, own_run=True)
    return None if isinstance(m, dymu.Dymu) else m


__all__ = ["Method", "register_method", "get_method", "method_names", "family_of", "method_for", "build_bundle",
           "open_run", "train", "run_training"]
