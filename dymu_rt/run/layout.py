"""A run folder: its layout, its config and stage records, and its safetensors files.

A run folder is an artifact a user hands us like a bundle (``dymu-rt train --out RUN`` makes
one; compile, evaluate, compare and inspect read it). Layout of a DYMU run::

    RUN/config.json                 preset, stage progress, producer versions
    RUN/anchor.safetensors          anchor net (after stage "anchor")
    RUN/edge_hypernet.safetensors   edge hypernet (stage "edge")
    RUN/weight_hypernet.safetensors weight hypernet (stage "weight")
    RUN/affinity.json               RSA task affinity used by stage "edge"
    RUN/state/<stage>.stepK.safetensors  resumable training state (model + optimizer tensors)
    RUN/state/<stage>.json          step counter, RNG seeds, scalar optimizer state, and
                                    the name of the tensor file (the JSON is the commit)
    RUN/logs/<stage>.jsonl          training curves (:mod:`dymu_rt.run.logs`)

A static-architecture run (``--method adashare|dag``; written by :mod:`dymu_rt.training.static_run`)::

    RUN/config.json                 method, method_config, preset, data, stages (warmup, search, final)
    RUN/model.safetensors           the trained network (the final stage's weights)
    RUN/architecture.json           the static graph (dymu_rt.models.graph) + the method's decisions
    RUN/state/<stage>.safetensors   a finished stage's network state

Every file is written atomically; a killed run resumes from the last state file.
``config.json`` is checked field by field at the door (:mod:`dymu_rt.run.schema`); loading a
module validates names and shapes against the preset and refuses a mismatch or NaN/Inf.
The training loops themselves live in :mod:`dymu_rt.training`; nothing here imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dymu_rt import __version__
from dymu_rt.control.hypernets import EdgeHypernet, WeightHypernet
from dymu_rt.core.errors import CheckpointError
from dymu_rt.models.backbones import build_nodes
from dymu_rt.models.presets import Preset
from dymu_rt.run.schema import DYMU_STAGES, STATIC_STAGES, validate_run_config
from dymu_rt.core.io import atomic_path, atomic_write_json, read_json

def _short(value, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: the stages of a DYMU run, and (STATIC_STAGES) of a static-architecture run, in order
STAGES = DYMU_STAGES
CONFIG = "config.json"
#: a static-architecture run's graph + decisions, and its trained network (MODEL.safetensors)
ARCHITECTURE = "architecture.json"
MODEL = "model"
__all__ = ["RunDir", "method_of", "DEFAULT_METHOD", "STAGES", "STATIC_STAGES", "CONFIG", "ARCHITECTURE", "MODEL", "save_module",
           "load_tensors", "check_finite", "load_module", "load_state_into", "optimizer_tensors",
           "restore_optimizer"]


def save_module(module: nn.Module, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
    """Save a module's state dict (parameters and buffers) as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {})


def load_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a missing or corrupt file into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{what} {path} is not a valid safetensors file ({e})") from None


def check_finite(state: dict[str, torch.Tensor], path, what: str) -> None:
    """CheckpointError when a floating-point tensor (weights, BN statistics, optimizer
    moments) holds NaN or Inf: resuming or building from it only spreads the NaN."""
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{what} {path}: tensor '{k}' holds NaN or infinite values; refusing to use it "
                                  "(restore an earlier checkpoint, or delete the state/ folder to restart the stage)")


def load_module(module: nn.Module, path: Path, what: str) -> nn.Module:
    """Load weights into ``module``, refusing missing/unexpected names and shape mismatches."""
    return load_state_into(module, load_tensors(path, what), path, what)


def load_state_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> nn.Module:
    """Load ``state`` into ``module`` after checking names and shapes (CheckpointError if not)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "") + \
                 (f" unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}" if unexpected else "")
        raise CheckpointError(f"{what} {path} does not match the model: {detail.strip()}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{what} {path}: tensor '{k}' has shape {tuple(state[k].shape)}, "
                                  f"the model expects {tuple(v.shape)}")
    check_finite(state, path, what)
    module.load_state_dict(state)
    return module


class RunDir:
    """A training run directory: preset, stage progress and the trained modules."""
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- config ---------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def exists(self) -> bool:
        """True when the directory holds a run config."""
        return self.config_path.is_file()

    def read_config(self) -> dict[str, Any]:
        """The run's config.json (refuses a directory that is not a run)."""
        if not self.path.is_dir():
            raise CheckpointError(f"run directory not found: {self.path}")
        if not self.config_path.is_file():
            raise CheckpointError(f"{self.path} is not a dymu-rt run (no {CONFIG})")
        cfg = read_json(self.config_path, "run config")
        if not isinstance(cfg, dict) or "preset" not in cfg or "stages" not in cfg:
            raise CheckpointError(f"{self.config_path} is not a dymu-rt run config")
        stages = cfg["stages"]
        if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
            raise CheckpointError(f"{self.config_path}: 'stages' = {_short(stages)}; expected a table of "
                                  f"stage name -> {{\"done\": true|false, ...}}")
        for name, v in stages.items():
            if not isinstance(v.get("done", False), bool):
                raise CheckpointError(f"{self.config_path}: stages.{name}.done = {_short(v['done'])}; "
                                      f"expected true or false")
        if not isinstance(cfg["preset"], dict):
            raise CheckpointError(f"{self.config_path}: 'preset' = {_short(cfg['preset'])}; expected a table")
        validate_run_config(cfg, self.config_path)      # types, ranges, names (run/schema.py)
        return cfg

    def init(self, preset: Preset, data: str, extra: Optional[dict] = None) -> dict[str, Any]:
        """Create (or reuse, if the preset matches) the run config."""
        if self.exists():
            cfg = self.read_config()
            if cfg["preset"]["name"] != preset.name or cfg["preset"]["tasks"] != preset.to_dict()["tasks"]:
                raise CheckpointError(
                    f"{self.path} holds a run of preset '{cfg['preset']['name']}', not '{preset.name}'; "
                    "use another --out")
            return cfg
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"run directory {self.path} is a file; give a new or empty folder")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise CheckpointError(f"{self.path} is not empty and is not a dymu-rt run (no {CONFIG}); "
                                  "give a new or empty folder as --out")
        self.path.mkdir(parents=True, exist_ok=True)
        cfg = {"kind": "dymu-rt-run", "version": __version__, "preset": preset.to_dict(),
               "data": data, "stages": {s: {"done": False} for s in STAGES}, **(extra or {})}
        atomic_write_json(self.config_path, cfg)
        return cfg

    def preset(self) -> Preset:
        """The preset the run was trained with (as stored, so overrides are kept)."""
        return Preset.from_dict(self.read_config()["preset"])

    def stage_done(self, stage: str) -> bool:
        """True when ``stage`` finished."""
        return bool(self.read_config()["stages"].get(stage, {}).get("done"))

    def mark_done(self, stage: str, summary: dict[str, Any]) -> None:
        """Record a finished stage and its summary (metrics, steps) in the config."""
        cfg = self.read_config()
        cfg["stages"][stage] = {"done": True, **summary}
        atomic_write_json(self.config_path, cfg)

    def set_config_entry(self, key: str, value: Any) -> None:
        """Store one top-level entry of the config (e.g. the data options)."""
        cfg = self.read_config()
        cfg[key] = value
        atomic_write_json(self.config_path, cfg)

    def update_preset(self, preset: Preset) -> None:
        """Store the preset (with schedule overrides) in the config."""
        cfg = self.read_config()
        cfg["preset"] = preset.to_dict()
        atomic_write_json(self.config_path, cfg)

    # -- modules --------------------------------------------------------------------
    def module_path(self, name: str) -> Path:
        return self.path / f"{name}.safetensors"

    def load_anchor(self):
        """The trained anchor net (eval mode, frozen)."""
        preset = self.preset()
        anchor = preset.build()
        load_module(anchor, self.module_path("anchor"), "anchor checkpoint")
        return anchor.freeze()

    def load_edge_hypernet(self):
        """The trained edge hypernet (eval mode)."""

        preset = self.preset()
        net = EdgeHypernet(len(preset.tasks), _num_layers(preset), prior_c_slope=preset.train.identity_prior_c_slope)
        load_module(net, self.module_path("edge_hypernet"), "edge hypernet checkpoint")
        return net.eval()

    def load_weight_hypernet(self, delta_size: int):
        """The trained weight hypernet (eval mode)."""

        preset = self.preset()
        net = WeightHypernet(len(preset.tasks), delta_size)
        load_module(net, self.module_path("weight_hypernet"), "weight hypernet checkpoint")
        return net.eval()

    def load_all(self):
        """(preset, anchor, edge hypernet, weight hypernet or None if stage 2 is not done)."""
        for stage in ("anchor", "edge"):
            if not self.stage_done(stage):
                raise CheckpointError(f"{self.path}: stage '{stage}' has not finished; run "
                                      f"`dymu-rt train --out {self.path}` to complete it")
        anchor = self.load_anchor()
        edge = self.load_edge_hypernet()
        weight = self.load_weight_hypernet(anchor.bn_delta_size) if self.stage_done("weight") else None
        return self.preset(), anchor, edge, weight

    # -- resumable state --------------------------------------------------------------
    def save_state(self, stage: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Save resumable training state, never half-written.

        The tensors go to a file named after the step, then the JSON that names it is
        renamed into place: that rename is the commit. A kill before it leaves the previous
        state whole (the JSON still names the previous tensors); older tensor files are
        removed only after it.
        """
        folder = self.path / "state"
        name = f"{stage}.step{int(meta['step'])}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        atomic_write_json(folder / f"{stage}.json", {**meta, "tensors": name})
        for old in folder.glob(f"{stage}.*safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def clear_state(self, stage: str) -> None:
        """Remove ``stage``'s resumable state (after the stage's result is saved): the JSON
        first, so a kill in between leaves no JSON naming a missing tensor file."""
        folder = self.path / "state"
        (folder / f"{stage}.json").unlink(missing_ok=True)
        for old in folder.glob(f"{stage}.step*.safetensors"):
            old.unlink(missing_ok=True)

    def state_tensors_path(self, stage: str, meta: dict[str, Any]) -> Path:
        """The tensor file a state JSON names (``<stage>.safetensors`` in older runs)."""
        name = meta.get("tensors", f"{stage}.safetensors")
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
            raise CheckpointError(f"training state {self.path / 'state' / (stage + '.json')} names "
                                  f"an invalid tensor file {name!r}; delete the state/ folder to "
                                  "restart the stage")
        return self.path / "state" / name

    def load_state(self, stage: str) -> Optional[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
        """The last saved state of ``stage`` or None."""
        jpath = self.path / "state" / f"{stage}.json"
        if not jpath.is_file():
            return None
        meta = read_json(jpath, "training state")
        if not isinstance(meta, dict) or isinstance(meta.get("step"), bool) or \
                not isinstance(meta.get("step"), int) or meta["step"] < 0 or \
                not isinstance(meta.get("optimizer"), dict):
            raise CheckpointError(f"training state {jpath} is malformed (expected a step counter and "
                                  "optimizer state); delete the state/ folder to restart the stage")
        return load_tensors(self.state_tensors_path(stage, meta), "training state"), meta

    def restore_state(self, stage: str, module: nn.Module, opt: torch.optim.Optimizer,
                      tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Load a saved state's model and optimizer tensors, validated (CheckpointError)."""
        path = self.state_tensors_path(stage, meta)
        model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        load_state_into(module, model, path, "training state")
        check_finite(tensors, path, "training state")
        restore_optimizer(opt, tensors, meta["optimizer"], path=path)


#: the method of a run whose config names none (runs that predate the option: DYMU's)
DEFAULT_METHOD = "dymu"


def method_of(run: RunDir) -> str:
    """The name of the method a run was trained with (:data:`DEFAULT_METHOD` for runs that
    predate the option)."""
    return str(run.read_config().get("method", DEFAULT_METHOD))


def _num_layers(preset: Preset) -> int:

    return len(build_nodes(preset.backbone)[1])


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "opt") -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer's state into tensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            key = f"{prefix}.{pid}.{k}"
            if torch.is_tensor(v):
                tensors[key] = v
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                      prefix: str = "opt", path: Optional[Path] = None) -> None:
    """Inverse of :func:`optimizer_tensors`; a state that does not fit ``opt`` is a CheckpointError."""
    where = f"training state {path}" if path is not None else "optimizer state"

    def bad(detail: str) -> CheckpointError:
        return CheckpointError(f"{where} does not match the optimizer: {detail}; delete the state/ "
                               "folder of the run to restart the stage")

    params = [p for g in opt.param_groups for p in g["params"]]
    groups = meta.get("param_groups") if isinstance(meta, dict) else None
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups) or \
            any(not isinstance(g, dict) or not isinstance(g.get("params"), list) for g in groups):
        raise bad("param_groups missing or of the wrong length")
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        raise bad("parameter counts per group differ")
    state: dict[int, dict[str, Any]] = {}
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict):
        raise bad("'scalars' is not a mapping")
    for key, v in [(k, v) for k, v in tensors.items() if k.startswith(prefix + ".")] + list(scalars.items()):
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params):
            raise bad(f"unexpected entry '{key}'")
        pid = int(parts[1])
        if torch.is_tensor(v) and v.dim() > 0 and tuple(v.shape) != tuple(params[pid].shape):
            raise bad(f"'{key}' has shape {tuple(v.shape)}, the parameter has {tuple(params[pid].shape)}")
        state.setdefault(pid, {})[parts[2]] = v
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise bad(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
