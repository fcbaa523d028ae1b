"""All training stages in order: anchor -> edge hypernet -> weight hypernet.

Every stage is resumable, so re-running the same command after a kill continues where
it stopped, and re-running a finished run is a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from dymu_rt.errors import ValidationError
from dymu_rt.models.presets import Preset, get_preset
from dymu_rt.train.checkpoint import RunDir

STAGE_GROUPS = {"all": ("anchor", "edge", "weight"), "anchor": ("anchor",),
                "controller": ("edge", "weight"), "phn-bn": ("phn-bn",)}


def open_run(out: str | Path, preset: Optional[str], data: Optional[str],
             overrides: Optional[dict] = None) -> RunDir:
    """Create a run for ``preset`` at ``out``, or reopen the run there (resume).

    Schedule ``overrides`` (e.g. anchor_steps) apply to a new run, or to a resumed run
    whose stages they concern have not finished.
    """
    run = RunDir(out)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if run.exists():
        cfg = run.read_config()
        stored = run.preset()
        if preset is not None and preset != stored.name:
            raise ValidationError(f"{out} holds a run of preset '{stored.name}', not '{preset}'; "
                                  "use another --out")
        if data is not None and data != cfg["data"]:
            raise ValidationError(f"{out} was trained on data '{cfg['data']}', not '{data}'")
        if overrides:
            run.update_preset(stored.with_train(**overrides))
        return run
    if preset is None:
        raise ValidationError(f"{out} is not a run yet: give --preset (e.g. --preset synth-nyu)")
    p: Preset = get_preset(preset)
    if overrides:
        p = p.with_train(**overrides)
    run.init(p, data=data or "synth")
    return run


def train(run: RunDir, stages: str = "all", seed: int = 0, n_train: Optional[int] = None,
          n_val: Optional[int] = None, progress: bool = True, save_every: int = 100) -> dict:
    """Run the stages of ``stages`` ("all", "anchor", "controller"); returns the config."""
    from dymu_rt.train.anchor import train_anchor
    from dymu_rt.train.controller import train_edge, train_weight
    from dymu_rt.train.phn import train_phn_bn

    data = run.read_config()["data"]
    for stage in STAGE_GROUPS[stages]:
        if stage == "anchor":
            train_anchor(run, data, seed, save_every, n_train, n_val, progress)
        elif stage == "edge":
            train_edge(run, data, seed, save_every, n_train, n_val, progress)
        elif stage == "weight":
            train_weight(run, data, seed, save_every, n_train, progress)
        else:
            if not run.stage_done("anchor"):
                raise ValidationError(f"{run.path}: train the anchor first (dymu-rt train anchor)")
            train_phn_bn(run, data, seed, n_train, progress)
    return run.read_config()
