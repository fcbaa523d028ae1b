"""The method registry: a method family is one module that registers its methods by decorator.

Learnt from timm's ``_registry.py`` (a model file registers its entry points; one lookup
refuses an unknown name listing the known ones; duplicates are an error at import), with a
typed interface instead of free functions: a :class:`Method` says how a run of it is trained,
what it is lowered to (the architecture IR of :mod:`dymu_rt.compile.build`), what its bundle
holds, and which rows it adds to ``dymu-rt compare``.

A method's ``name`` is the string a run's config (``method``) and a static bundle's manifest
(``static.method``) carry. Those files are read by the deploy wing and the run-folder schema,
which cannot import this package, so the names a file may hold are also spelled there as
data (``dymu_rt.bundle.schema.STATIC_METHODS``, ``dymu_rt.run.schema.RUN_STAGES``);
``tests/methods/test_registry.py`` checks the two spellings agree.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from dymu_rt.core.errors import ValidationError

_METHODS: dict[str, "Method"] = {}
_FAMILY: dict[str, list[str]] = {}


class Method:
    """One method. Subclasses set the class attributes and override what applies.

    * ``name``    the registered name (run config ``method``, manifest ``static.method``).
    * ``bundle``  ``"grid"`` (a preference grid of topologies and a controller) or
      ``"static"`` (one architecture, nothing bound per preference).
    * ``own_run`` True when ``dymu-rt train --method NAME`` makes a run of it; False for the
      rows derived from another method's run (single-task, PHN-BN, retrained trees).
    * ``done_stage`` the stage a finished run of it has marked done.
    """

    name: ClassVar[str] = ""
    bundle: ClassVar[str] = "static"
    own_run: ClassVar[bool] = False
    done_stage: ClassVar[Optional[str]] = None

    # -- training ---------------------------------------------------------------------------------
    def check_options(self, flow: Optional[int]) -> None:
        """ValidationError for a training option this method does not take."""
        if flow is not None:
            raise ValidationError(f"--flow applies to --method dag only (got --method {self.name})")

    def check_preset(self, preset) -> None:
        """ValidationError when the method cannot train on ``preset``'s network."""

    def new_run_extra(self, preset, overrides: dict, flow: Optional[int]) -> dict[str, Any]:
        """The config entries a new run of this method starts with (beyond preset and data)."""
        return {}

    def check_resume(self, run, overrides: dict, flow: Optional[int]) -> None:
        """Refuse resuming ``run`` (of this method) with settings it cannot change to."""

    def train(self, run, stages: str = "all", seed=None, n_train=None, n_val=None, progress: bool = True,
              save_every: int = 100, setup=None, setup_record=None) -> dict:
        """Train ``run``'s ``stages`` (keywords: :func:`dymu_rt.training.pipeline.train`'s); returns
        the run config."""
        raise ValidationError(f"method '{self.name}' has no trainer of its own: its rows come from another "
                              "method's run")

    # -- build --------------------------------------------------------------------------------------
    def lower(self, run, step, c_step):
        """The run lowered to the architecture IR the build writes
        (:class:`~dymu_rt.compile.build.GridLowering` or
        :class:`~dymu_rt.compile.build.StaticLowering`)."""
        raise ValidationError(f"{run.path}: a '{self.name}' bundle is built by `dymu-rt compare`, not from a run")

    # -- evaluation ---------------------------------------------------------------------------------
    def label(self, cfg: dict) -> str:
        """How a run of this method is named in tables."""
        return self.name

    def rows(self, run, retrained: Optional[dict]) -> list[dict]:
        """This method's ``dymu-rt compare`` rows from ``run`` (see
        :func:`dymu_rt.app.compare.contenders` for a row's keys)."""
        return []

    def budget(self, run) -> str:
        """The training steps behind this method's compare row."""
        return ""

    def __repr__(self) -> str:
        return f"<method {self.name}>"


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if not cls.name or cls.name in _METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or registered twice")
    if cls.bundle not in ("grid", "static"):
        raise ValueError(f"method {cls.name!r}: bundle must be 'grid' or 'static', got {cls.bundle!r}")
    _METHODS[cls.name] = cls()
    _FAMILY.setdefault(cls.__module__.rsplit(".", 1)[-1], []).append(cls.name)
    return cls


def get_method(name: str, flag: str = "--method", own_run: Optional[bool] = None) -> Method:
    """The registered method ``name`` (with ``own_run``: only one that has / has not runs of
    its own); ValidationError naming the known ones otherwise."""
    m = _METHODS.get(name) if isinstance(name, str) else None
    if m is None or (own_run is not None and m.own_run != own_run):
        raise ValidationError(f"{flag} '{name}' is not valid; expected one of "
                              f"{', '.join(method_names(True if own_run is None else own_run))}")
    return m


def method_names(own_run: Optional[bool] = None) -> tuple[str, ...]:
    """Registered names in registration order (only those with / without runs of their own)."""
    return tuple(n for n, m in _METHODS.items() if own_run is None or m.own_run == own_run)


def family_of(name: str) -> str:
    """The module (family) that registered ``name``."""
    return next(f for f, names in _FAMILY.items() if name in names)
