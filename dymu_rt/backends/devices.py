"""Device profiles: what a target device is and how engines are built for it.

Profiles are TOML files; the shipped ones live in ``dymu_rt/profiles/`` (the package
``dymu_rt.profiles``). A profile names the backend, precision, threads, memory budgets,
TensorRT builder settings (workspace, optimization level, DLA) and the input batch range.
Unknown or ill-typed keys are refused with the offending key named.

Schema (all sections optional except the top-level ``name``/``backend``)::

    name = "x86-64-cpu"              # ^[A-Za-z0-9._-]+$, not "." or "..": it names bundle folders
    description = "Any x86-64 CPU, ONNX Runtime"
    backend = "onnxruntime"          # onnxruntime | tensorrt | openvino
    device = "cpu"                   # tensorrt: a substring of the GPU name (case-insensitive,
                                     # "A|B" = either); builds/loads are refused on a GPU whose
                                     # name lacks it ("cpu"/"any" = no check).
                                     # onnxruntime: informational only.
    precision = "fp32"               # fp32 | fp16 | int8 | bf16 (bf16: openvino only)
    threads = 0                      # intra-op threads, 0 = all cores

    [input]
    shape = [3, 64, 64]              # C, H, W of one image (C = 3); absent = taken from the bundle.
                                     # Runtime.open refuses a bundle whose input_size differs.
    batch_min = 1
    batch_opt = 1
    batch_max = 8

    [memory]
    engine_cache_mb = 512            # LRU budget for cached engines
    workspace_mb = 1024              # TensorRT builder workspace
    folded_engines = 1               # at most this many folded second-tier engines cached (each
                                     # holds its own weights and session; by default the current
                                     # one only: 2 kept pascal3's RSS at 8 topologies 1.34x that at
                                     # 1, over the 1.3x target; 1 gave 1.23x, benchmarks/bench_tiers.py)

    [runtime]
    second_tier = "background"       # background | sync | off: build each preference's folded,
                                     # fully optimized engine in a background worker after a
                                     # switch, inside set_preference, or never (memory-tight
                                     # devices); docs/runtime-tiers.md

    [tensorrt]
    builder_optimization_level = 3   # 0..5
    dla_core = -1                    # -1 = no DLA; >= 0 needs batch_min == batch_max (DLA has no
                                     # dynamic shapes) and precision fp16 or int8
    gpu_fallback = true
    refittable = true
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path
from typing import Any, Optional

try:
    import tomllib
except ModuleNotFoundError:      # Python 3.10 (JetPack 6): the same parser, from PyPI
    import tomli as tomllib

from dymu_rt.backends.registry import backend_names
from dymu_rt.bundle.sections import NAME_RE  # a profile name is a folder name (engines/<backend>/<name>)
from dymu_rt.core.errors import ValidationError
from dymu_rt.core.limits import check_threads

PRECISIONS = ("fp32", "fp16", "int8", "bf16")
#: backends that run bf16 (OpenVINO's CPU plugin on CPUs with AVX512_BF16 or AMX)
BF16_BACKENDS = ("openvino",)
#: backends whose ``threads`` is the number of CPU threads of an inference (``with_threads``)
CPU_BACKENDS = ("onnxruntime", "openvino")
#: ``[runtime] second_tier``: how the Runtime reaches a preference's folded engine
#: (docs/runtime-tiers.md): in a background worker, inside set_preference, or never
SECOND_TIER_MODES = ("background", "sync", "off")
#: Largest batch a profile may declare (a batch is allocated as one tensor).
MAX_PROFILE_BATCH = 4096
#: Deepest TOML nesting read (a profile is 2 deep); deeper is refused before parsing.
MAX_TOML_DEPTH = 8
#: Largest engine cache / workspace a profile may declare, MiB (1 TiB).
MAX_PROFILE_MB = 2**20


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """A parsed, validated device profile."""

    name: str
    backend: str
    description: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    shape: Optional[tuple[int, int, int]] = None     # (C, H, W); None = any (from the bundle)
    batch_min: int = 1
    batch_opt: int = 1
    batch_max: int = 8
    engine_cache_mb: int = 512
    workspace_mb: int = 1024
    builder_optimization_level: int = 3
    dla_core: int = -1
    gpu_fallback: bool = True
    refittable: bool = True
    second_tier: str = "background"
    folded_engines: int = 1
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (recorded in bundles next to engines built with this profile)."""
        return dataclasses.asdict(self)


_SCHEMA: dict[str, dict[str, type]] = {
    "": {"name": str, "description": str, "backend": str, "device": str, "precision": str,
         "threads": int},
    "input": {"shape": list, "batch_min": int, "batch_opt": int, "batch_max": int},
    "memory": {"engine_cache_mb": int, "workspace_mb": int, "folded_engines": int},
    "tensorrt": {"builder_optimization_level": int, "dla_core": int, "gpu_fallback": bool,
                 "refittable": bool},
    "runtime": {"second_tier": str},
}


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> DeviceProfile:
    """Validate a profile's TOML table and return a :class:`DeviceProfile`."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in _SCHEMA or key == "":
                raise ValidationError(f"{source}: unknown section [{key}]; expected one of "
                                      f"{', '.join(k for k in _SCHEMA if k)}")
            section, items = key, value
        else:
            section, items = "", {key: value}
        for k, v in items.items():
            full = f"{section}.{k}" if section else k
            if k not in _SCHEMA[section]:
                raise ValidationError(f"{source}: unknown key '{full}'; expected one of "
                                      f"{', '.join(sorted(_SCHEMA[section]))}")
            typ = _SCHEMA[section][k]
            ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
            if not ok:
                raise ValidationError(f"{source}: key '{full}' = {v!r} must be a {typ.__name__}")
            flat[k] = v
    for required in ("name", "backend"):
        if required not in flat:
            raise ValidationError(f"{source}: missing key '{required}'")
    name = flat["name"]
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ValidationError(f"{source}: key 'name' = {name!r} must match ^[A-Za-z0-9._-]+$ and not be "
                              "'.' or '..' (it names a folder inside bundles)")
    if "shape" in flat:
        shape = flat["shape"]
        if (len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
                or shape[0] != 3):
            raise ValidationError(f"{source}: key 'input.shape' = {shape!r} must be [3, height, width] "
                                  "with positive integers")
        flat["shape"] = tuple(shape)
    if flat["backend"] not in backend_names():
        raise ValidationError(f"{source}: key 'backend' = {flat['backend']!r}; expected one of "
                              f"{tuple(backend_names())}")
    if flat.get("precision", "fp32") not in PRECISIONS:
        raise ValidationError(f"{source}: key 'precision' = {flat['precision']!r}; expected one of {PRECISIONS}")
    if flat.get("precision") == "bf16" and flat["backend"] not in BF16_BACKENDS:
        raise ValidationError(f"{source}: key 'precision' = 'bf16' needs backend {' or '.join(BF16_BACKENDS)!r}, "
                              f"not {flat['backend']!r}")
    check_threads(flat.get("threads", 0), f"{source}: key 'threads'")
    for key in ("batch_min", "batch_opt", "batch_max"):
        if not 1 <= flat.get(key, 1) <= MAX_PROFILE_BATCH:
            raise ValidationError(f"{source}: key '{key}' = {flat[key]!r}; expected 1 to {MAX_PROFILE_BATCH}")
    # Caps, not allocations, and a profile describes its target device, not this machine (the
    # shipped datacenter-gpu profile caches 16 GiB): bounded by MAX_PROFILE_MB so a number
    # meant as bytes is caught; what is allocated is checked against this machine where it is made.
    for key in ("engine_cache_mb", "workspace_mb"):
        if not 0 <= flat.get(key, 0) <= MAX_PROFILE_MB:
            raise ValidationError(f"{source}: key '{key}' = {flat[key]!r}; expected 0 to {MAX_PROFILE_MB} (MiB)")
    bmin, bopt, bmax = (flat.get("batch_min", 1), flat.get("batch_opt", 1), flat.get("batch_max", 8))
    if not (1 <= bmin <= bopt <= bmax):
        raise ValidationError(f"{source}: [input] needs 1 <= batch_min <= batch_opt <= batch_max, "
                              f"got {bmin}, {bopt}, {bmax}")
    if flat.get("folded_engines", 1) < 1:
        raise ValidationError(f"{source}: key 'memory.folded_engines' = {flat['folded_engines']} must be >= 1 "
                              "(turn the second tier off with [runtime] second_tier = \"off\")")
    for k in ("engine_cache_mb", "workspace_mb"):
        if flat.get(k, 1) <= 0:
            raise ValidationError(f"{source}: key 'memory.{k}' = {flat[k]} must be > 0")
    if flat.get("second_tier", "background") not in SECOND_TIER_MODES:
        raise ValidationError(f"{source}: key 'runtime.second_tier' = {flat['second_tier']!r}; expected one of "
                              f"{SECOND_TIER_MODES}")
    if not 0 <= flat.get("builder_optimization_level", 3) <= 5:
        raise ValidationError(f"{source}: key 'tensorrt.builder_optimization_level' must be in 0..5")
    if flat.get("dla_core", -1) < -1:
        raise ValidationError(f"{source}: key 'tensorrt.dla_core' must be -1 (none) or a core index")
    if flat.get("dla_core", -1) >= 0:
        # DLA engines have no dynamic shapes and run FP16/INT8 only. Note: TensorRT 11.0-11.3
        # has no DLA support on Jetson at all; DLA profiles need JetPack 6 (TensorRT 10.x).
        if flat.get("backend") != "tensorrt":
            raise ValidationError(f"{source}: key 'tensorrt.dla_core' = {flat['dla_core']} needs backend "
                                  "'tensorrt'")
        if not bmin == bopt == bmax:
            raise ValidationError(f"{source}: key 'input.batch_max' = {bmax}: a DLA profile (tensorrt.dla_core "
                                  f"= {flat['dla_core']}) needs batch_min == batch_opt == batch_max (DLA has no "
                                  f"dynamic shapes), got {bmin}, {bopt}, {bmax}")
        if flat.get("precision", "fp32") not in ("fp16", "int8"):
            raise ValidationError(f"{source}: key 'precision' = {flat.get('precision', 'fp32')!r}: a DLA profile "
                                  "(tensorrt.dla_core >= 0) needs fp16 or int8")
    return DeviceProfile(source=source, **flat)


def _shipped_dir():
    return importlib.resources.files("dymu_rt.profiles")


def list_profiles() -> list[DeviceProfile]:
    """All shipped profiles, sorted by name."""
    out = []
    for entry in _shipped_dir().iterdir():
        if entry.name.endswith(".toml"):
            out.append(load_profile(entry.name[: -len(".toml")]))
    return sorted(out, key=lambda p: p.name)


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (e.g. ``x86-64-cpu``) or a TOML file by path."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path                     # already loaded (e.g. a copy with other threads)
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ValidationError(f"profile file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        entry = _shipped_dir() / f"{name_or_path}.toml"
        if not entry.is_file():
            names = sorted(e.name[:-5] for e in _shipped_dir().iterdir() if e.name.endswith(".toml"))
            raise ValidationError(f"unknown profile '{name_or_path}'; expected one of {', '.join(names)} "
                                  "or a path to a .toml file")
        text, source = entry.read_text(encoding="utf-8"), f"{name_or_path}.toml"
    if len(text) > 1_000_000:
        raise ValidationError(f"{source}: {len(text):,} characters; a device profile is a few hundred")
    if not _toml_depth_ok(text):
        raise ValidationError(f"{source}: nests deeper than {MAX_TOML_DEPTH} levels; not a device profile")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ValidationError(f"{source}: not valid TOML ({e})") from None
    prof = parse_profile(data, source)
    return prof


def _toml_depth_ok(text: str) -> bool:
    """True when no inline array/table nests deeper than MAX_TOML_DEPTH (checked on the text,
    strings skipped, so a hostile file cannot exhaust the parser's recursion: the manifest's
    guard, for TOML)."""
    depth = 0
    quote = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return False
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return True


DEFAULT_PROFILE = "x86-64-cpu"


def with_threads(profile, threads: int) -> DeviceProfile:
    """``profile`` (a name, a path or a loaded profile) with ``threads`` intra-op threads, as a
    profile the Runtime accepts; unchanged when ``threads`` is 0 or the backend does not run on
    the CPU (:data:`CPU_BACKENDS`; TensorRT runs on the GPU: host threads are not its knob)."""
    prof = load_profile(profile)
    check_threads(threads)
    return dataclasses.replace(prof, threads=int(threads)) if threads and prof.backend in CPU_BACKENDS else prof
