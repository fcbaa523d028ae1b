"""The trust boundary of a run folder: ``config.json`` checked field by field at the door.

A run folder is an artifact a user hands us like a bundle. :func:`validate_run_config` (called
by :meth:`dymu_rt.run.layout.RunDir.read_config`, the one reader) checks what the old
reader let through into tracebacks and memory bombs: every field of the stored preset against
its declared type (the preset dataclasses' annotations: ``"data": 5`` or ``seed: "x"`` is one
line, not a TypeError deep in a trainer), ranges that bound what a model or data set allocates
(``backbone.width_mult = 1000`` asked for 147 GB, ``n_train = 10**12`` for 8 TB), names that
become file names or output keys as identifiers (``tasks[0].name = "../../x"``), three finite
``mean``/``std`` values, a known ``method``. NaN/Inf never get here: :func:`dymu_rt.core.io.read_json`
refuses them in every JSON file it reads.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from dymu_rt.core.errors import CheckpointError
from dymu_rt.models.backbones import BackboneSpec
from dymu_rt.models.heads import HeadSpec
from dymu_rt.models.presets import Preset, TaskSpec, TrainDefaults

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
PRESET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DYMU_STAGES = ("anchor", "edge", "weight")          # layout.STAGES
STATIC_STAGES = ("warmup", "search", "final")       # the static methods' stages
#: The method names a run config may carry and the stages of each: the registered methods
#: with runs of their own (dymu_rt.methods). Data here: the run-folder schema is read without
#: the methods (tests/methods/test_registry.py checks the two agree). A run without a
#: ``method`` is DYMU's (layout.DEFAULT_METHOD).
RUN_STAGES = {"dymu": DYMU_STAGES, "adashare": STATIC_STAGES, "dag": STATIC_STAGES}
METHODS = tuple(RUN_STAGES)
#: Largest number of samples a run may ask for (synthetic scenes are rendered on demand).
MAX_SAMPLES = 10_000_000
#: Ranges of the fields that size a model or its training (inclusive).
RANGES: dict[str, tuple[float, float]] = {
    "width_mult": (0.01, 4.0), "depth": (0, 200), "output_stride": (0, 64), "raspp_channels": (0, 4096),
    "aspp_channels": (0, 4096), "decoder_channels": (0, 4096), "low_channels": (0, 4096),
    "out_channels": (1, 4096), "num_classes": (1, 4096), "loss_weight": (0.0, 1e6),
}
_INT_MAX = 10**9
_SIDE = (8, 4096)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 50 else text[:47] + "..."


class _Bad(Exception):
    pass


def _check_value(value: Any, typ: str, where: str) -> None:
    if typ.startswith("Optional["):
        if value is None:
            return
        typ = typ[len("Optional["):-1]
    if typ == "bool":
        ok = isinstance(value, bool)
    elif typ == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _INT_MAX
    elif typ == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif typ == "str":
        ok = isinstance(value, str) and len(value) <= 4096
    elif typ.startswith("tuple["):
        inner = typ[len("tuple["):-1]
        if not isinstance(value, (list, tuple)) or len(value) > 4096:
            raise _Bad(f"{where} = {_short(value)}; expected a list")
        parts = [p.strip() for p in inner.split(",")]
        if parts[-1] == "...":
            for i, v in enumerate(value):
                _check_value(v, parts[0], f"{where}[{i}]")
        else:
            if len(value) != len(parts):
                raise _Bad(f"{where} = {_short(value)}; expected {len(parts)} values")
            for i, (v, t) in enumerate(zip(value, parts)):
                _check_value(v, t, f"{where}[{i}]")
        return
    else:
        return                     # nested dataclasses are checked by their own walk
    if not ok:
        raise _Bad(f"{where} = {_short(value)}; expected {'a number' if typ == 'float' else 'an ' + typ if typ == 'int' else 'a ' + typ} ")


def _check_fields(d: Any, cls, where: str) -> None:
    if not isinstance(d, dict):
        raise _Bad(f"{where} = {_short(d)}; expected a table")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        _check_value(v, str(f.type), f"{where}.{f.name}")
        lo_hi = RANGES.get(f.name)
        if lo_hi is not None and v is not None and not lo_hi[0] <= v <= lo_hi[1]:
            raise _Bad(f"{where}.{f.name} = {_short(v)}; expected {lo_hi[0]} to {lo_hi[1]}")


def check_preset_dict(p: Any, where: str = "preset") -> None:
    """Types, ranges and names of a stored preset (raises _Bad)."""
    if not isinstance(p, dict):
        raise _Bad(f"{where} = {_short(p)}; expected a table")
    _check_fields(p, Preset, where)
    if not isinstance(p.get("name"), str) or not PRESET_NAME_RE.fullmatch(p["name"]):
        raise _Bad(f"{where}.name = {_short(p.get('name'))}; expected a name of letters, digits, '.', '_', '-'")
    tasks = p.get("tasks")
    if not isinstance(tasks, (list, tuple)) or not 1 <= len(tasks) <= 64:
        raise _Bad(f"{where}.tasks = {_short(tasks)}; expected a list of 1 to 64 tasks")
    names = []
    for i, t in enumerate(tasks):
        _check_fields(t, TaskSpec, f"{where}.tasks[{i}]")
        if not isinstance(t.get("name"), str) or not NAME_RE.fullmatch(t["name"]):
            raise _Bad(f"{where}.tasks[{i}].name = {_short(t.get('name'))}; expected an identifier "
                       "(letters, digits, '_', '-'; it names output files)")
        names.append(t["name"])
    if len(set(names)) != len(names):
        raise _Bad(f"{where}.tasks: task names {names} are not unique")
    for key, cls in (("backbone", BackboneSpec), ("head", HeadSpec), ("train", TrainDefaults)):
        if key in p:
            _check_fields(p[key], cls, f"{where}.{key}")
    if isinstance(p.get("train"), dict):
        for k, v in p["train"].items():
            if isinstance(v, int) and not isinstance(v, bool) and (k.endswith(("steps", "batch", "samples"))) \
                    and not 0 <= v <= MAX_SAMPLES:
                raise _Bad(f"{where}.train.{k} = {_short(v)}; expected 0 to {MAX_SAMPLES:,}")
    size = p.get("input_size")
    if isinstance(size, (list, tuple)) and not all(isinstance(s, int) and _SIDE[0] <= s <= _SIDE[1] for s in size):
        raise _Bad(f"{where}.input_size = {_short(size)}; expected two sides from {_SIDE[0]} to {_SIDE[1]}")
    for key in ("mean", "std"):
        v = p.get(key)
        if isinstance(v, (list, tuple)) and key == "std" and any(x <= 0 for x in v):
            raise _Bad(f"{where}.std = {_short(v)}; expected three numbers > 0")


def validate_run_config(cfg: dict, path) -> None:
    """One CheckpointError line for a run config a user (or an attacker) edited."""
    try:
        if "kind" in cfg and cfg["kind"] != "dymu-rt-run":
            raise _Bad(f"kind = {_short(cfg['kind'])}; expected 'dymu-rt-run'")
        if "data" in cfg and not isinstance(cfg["data"], str):
            raise _Bad(f"data = {_short(cfg['data'])}; expected 'synth' or a dataset folder")
        if "method" in cfg and cfg["method"] not in METHODS:
            raise _Bad(f"method = {_short(cfg['method'])}; expected one of {', '.join(METHODS)}")
        method = cfg.get("method", "dymu")            # a run without one is DYMU's
        stages = set(cfg.get("stages") or {})
        want = set(RUN_STAGES[method])
        if stages and not stages & want:
            raise _Bad(f"method = {_short(method)} but the run's stages are {sorted(stages)} (a "
                       f"{'DYMU' if want == set(STATIC_STAGES) else 'static'} run's); expected {sorted(want)}")
        opts = cfg.get("data_options")
        if opts is not None:
            if not isinstance(opts, dict):
                raise _Bad(f"data_options = {_short(opts)}; expected a table")
            seed = opts.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
                raise _Bad(f"data_options.seed = {_short(seed)}; expected an integer >= 0")
            for k in ("n_train", "n_val"):
                v = opts.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SAMPLES):
                    raise _Bad(f"data_options.{k} = {_short(v)}; expected an integer from 1 to {MAX_SAMPLES:,}")
        check_preset_dict(cfg["preset"])
    except _Bad as e:
        raise CheckpointError(f"{path}: {str(e).strip()}") from None
