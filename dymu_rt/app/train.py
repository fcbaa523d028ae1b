"""``dymu_rt.train``: the public door to training (what ``dymu-rt train`` does, as a function).

The train wing's package is :mod:`dymu_rt.training` (it was ``dymu_rt.train`` until issue 26)
so that ``from dymu_rt import train`` can be this function without a subpackage of the same
name rebinding it once something imports it. It is a use case (here, over both wings, like
``compare`` and ``demo``) rather than part of :mod:`dymu_rt.training`, so that it can sit over
whatever picks a method's trainer. The stage loops stay where they are:
:func:`dymu_rt.training.pipeline.train` trains the stages of an opened run; this function
opens (or resumes) the run folder first, checks every option before anything is written,
and hands back the run::

    from dymu_rt import build_bundle, train

    run = train("runs/demo", preset="synth-nyu", overrides={"anchor_steps": 200}, threads=2)
    build_bundle(run.path, "bundles/demo", step="0.25")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from dymu_rt.run.layout import RunDir
from dymu_rt.training.common import set_threads
from dymu_rt.methods import run_training
from dymu_rt.training.pipeline import OVERRIDE_FLAGS


def train(out: str | Path, preset: Optional[str] = None, *, data: Optional[str] = None, stages: str = "all",
          method: str = "dymu", flow: Optional[int] = None, seed: Optional[int] = None,
          n_train: Optional[int] = None, n_val: Optional[int] = None,
          overrides: Optional[dict[str, Any]] = None, save_every: int = 100, progress: bool = False,
          threads: Optional[int] = None, device: Optional[str] = None, precision: Optional[str] = None,
          channels_last: Optional[bool] = None, workers: Optional[int] = None,
          sync_bn: Optional[bool] = None) -> RunDir:
    """Train a run folder at ``out`` (created for ``preset``, or resumed) and return it.

    ``stages``: "all" (anchor net, edge hypernet, weight hypernet), "anchor", "controller" or
    "phn-bn" (DYMU runs; a ``method`` "adashare" or "dag" run trains as a whole). ``data``:
    "synth" (default) or a dataset folder. ``overrides``: training settings of the preset
    (``anchor_steps``, ``anchor_batch``, ``edge_steps``, ``tau``, ...; the same keys as the
    command line's options set). ``seed``, ``n_train``, ``n_val``: recorded in a new run,
    checked against the recorded ones on resume. ``threads``: PyTorch intra-op threads for
    this process (None: PyTorch's default). ``device``, ``precision``, ``channels_last``,
    ``workers``, ``sync_bn``: where and how (None: as recorded in the run, else auto / fp32 /
    off / 0 / off). Raises :class:`~dymu_rt.core.errors.ValidationError` (an invalid option
    or data source) or :class:`~dymu_rt.core.errors.CheckpointError` (a run folder that is not
    one) with a one-line message, before anything is written.
    """
    set_threads(threads, "threads")
    # The messages name this function's keywords, not the command line's flags.
    flags = {key: f"overrides[{key!r}]" for key in OVERRIDE_FLAGS}
    run_training(out, stages, preset, data, dict(overrides or {}), seed=seed, n_train=n_train, n_val=n_val,
                 progress=progress, save_every=save_every, flags=flags, method=method, flow=flow,
                 device=device, precision=precision, channels_last=channels_last, workers=workers,
                 sync_bn=sync_bn)
    return RunDir(out)
