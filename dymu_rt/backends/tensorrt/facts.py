"""What a TensorRT engine is tied to, and refusing engines built for something else.

A serialized engine only runs with the TensorRT version that built it and on the GPU
architecture it was built for (DESIGN.md §6). Every engine file ``X.engine`` has a JSON
sidecar ``X.engine.json`` with those facts (plus the profile, precision and whether it is
refittable); :func:`check_facts` compares a sidecar with the running machine and refuses a
mismatch with one line that says what differs and how to rebuild. Pure python except
:func:`import_tensorrt` / :func:`current_facts`, which need the real libraries.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from dymu_rt.backends.tensorrt import cuda
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError
from dymu_rt.core.io import atomic_write_json, read_json

INSTALL_HINT = "pip install 'dymu-rt[tensorrt]' on a machine with an NVIDIA GPU"
#: Facts that must match exactly for an engine to be loaded.
FACT_KEYS = ("tensorrt", "gpu", "compute_capability")
SIDECAR_SUFFIX = ".json"


def import_tensorrt():
    """The ``tensorrt`` module, or BackendUnavailable with an install hint."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        raise BackendUnavailable("TensorRT backend unavailable: python package 'tensorrt' is not installed "
                                 f"({INSTALL_HINT})") from None


def check_available() -> dict[str, Any]:
    """Fail fast (BackendUnavailable, one line) unless TensorRT, pycuda and a GPU are usable.

    Called by ``dymu-rt build --backend tensorrt`` before anything is written. Returns the
    current device facts.
    """
    trt = import_tensorrt()

    return current_facts(trt, cuda.device_info())


def current_facts(trt, device: Mapping[str, Any]) -> dict[str, Any]:
    """Facts of this machine: TensorRT version, GPU name, compute capability ("8.7")."""
    return {"backend": "tensorrt", "tensorrt": str(trt.__version__), "gpu": str(device["name"]),
            "compute_capability": str(device["compute_capability"])}


def fact_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Readable differences in :data:`FACT_KEYS` ([] = the engine may be loaded)."""
    return [f"{k} {recorded.get(k)!r} (engine) != {current.get(k)!r} (this machine)"
            for k in FACT_KEYS if str(recorded.get(k)) != str(current.get(k))]


def check_facts(recorded: Mapping[str, Any], current: Mapping[str, Any], engine: str | Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU (BundleError + rebuild hint)."""
    diff = fact_mismatches(recorded, current)
    if diff:
        raise BundleError(f"TensorRT engine {engine} was built for another device or TensorRT: "
                          f"{'; '.join(diff)}; rebuild it on this machine with "
                          "`dymu-rt build --backend tensorrt --profile <profile>`")


#: Profile ``device`` values that name no particular GPU (no check).
_ANY_DEVICE = {"", "cpu", "any", "*"}


def device_matches(wanted: str, gpu: str) -> bool:
    """True when a profile's ``device`` (``|``-separated alternatives, each a case-insensitive
    substring of the GPU name; "cpu"/"any"/"" = no constraint) fits ``gpu``."""
    alts = [a.strip().lower() for a in str(wanted).split("|")]
    if all(a in _ANY_DEVICE for a in alts):
        return True
    return any(a and a not in _ANY_DEVICE and a in str(gpu).lower() for a in alts)


def check_device(profile, facts: Mapping[str, Any]) -> None:
    """Refuse a device profile made for another GPU (its ``device`` key vs the GPU name)."""
    if not device_matches(getattr(profile, "device", ""), facts.get("gpu", "")):
        raise ValidationError(f"profile '{profile.name}' is for device {profile.device!r} but this GPU is "
                              f"{facts.get('gpu')!r}; pick a profile for this GPU (`dymu-rt profiles`) or set "
                              "'device' in a copy of the profile")


def sidecar_path(engine: str | Path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def write_sidecar(engine: str | Path, record: Mapping[str, Any]) -> Path:
    """Write an engine's sidecar atomically; returns its path."""
    path = sidecar_path(engine)
    atomic_write_json(path, dict(record))
    return path


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """An engine's sidecar (BundleError when missing, malformed or lacking facts)."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise BundleError(f"TensorRT engine {engine} has no sidecar {path.name}; rebuild it with "
                          "`dymu-rt build --backend tensorrt`")
    try:
        rec = read_json(path, "engine sidecar")
    except Exception as e:  # read_json raises DymuError subclasses; keep the bundle wording
        raise BundleError(str(e)) from None
    missing = [k for k in FACT_KEYS if k not in rec]
    if missing:
        raise BundleError(f"engine sidecar {path} lacks {missing}; rebuild the engine")
    return rec
