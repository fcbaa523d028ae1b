"""``dymu-rt export triton``: a bundle as a Triton Inference Server model repository.

Layout (``REPO/<model>/config.pbtxt``, ``REPO/<model>/<version>/...``)::

    dymu/                          router: Python backend (BLS), inputs image, r, c
      config.pbtxt
      <v>/model.py                 template shipped with dymu-rt (dymu_rt/serve/triton/router/)
      <v>/dymu_vendor/...          dymu_rt.core's router files, copied verbatim (vendor.py)
      <v>/router.json              tasks, topologies, grid points, BN layout, model names
      <v>/bn_affine.safetensors    per-slot coefficients of scale/shift in the BN deltas
    dymu_edge_hypernet/            the bundle's edge hypernet: r [1, N], c [1, 1] -> logits
    dymu_weight_hypernet/          the bundle's weight hypernet: r, c -> BN deltas [D]
    dymu_topo_<topology>/          one per topology: image [B, 3, H, W] and per modulated BN
      <v>/model.onnx               slot <slot>.scale / <slot>.shift [B, C, 1, 1] -> one
                                   output per task (self-contained ONNX, raw conv weights)

Topology models are the runtime's ``affine`` graphs
(:func:`dymu_rt.backends.affine.affine_graph`): the per-preference BN scale/shift are
ordinary batched inputs, so Triton's dynamic batcher puts requests with different
preferences of one topology into one run. The hypernets run on the CPU whatever the
backend (tiny MLPs, as in the Runtime's controller).

``--backend onnxruntime`` serves the topology models with Triton's ONNX Runtime backend on
CPU instances (``KIND_CPU``). ``--backend tensorrt`` serves the same ONNX files on GPU
instances (``KIND_GPU``) with the ONNX Runtime backend's TensorRT execution accelerator:
TensorRT plans are tied to the TensorRT version and GPU of the serving container, so the
server builds them on its own GPU at load time (engine cache enabled) instead of this
machine shipping plans for a GPU it does not know. ``--backend python`` serves the same
ONNX files (hypernets and topologies) for a Triton with only the Python backend (the
``nvidia-pytriton`` wheel's server, a CPU-only edge box): each is a Python-backend model
(``python_model/model.py``) holding one ONNX Runtime session per instance (``--instances``,
``--threads``); the router is the same. That server's Python does not see a virtual
environment's packages, so every Python-backend config names the site-packages folders
holding numpy and onnxruntime (``dymu_rt.site_packages``: by default those of the Python
running the export; ``--site-packages`` overrides), read by ``dymu_site.py`` beside each
``model.py``.

Versions: every model of one export gets the same version number, one more than the
highest in the repository, and the router calls the others at exactly its own version, so
a server never mixes models of two bundles. Exporting the same bundle with the same
settings again changes nothing. The export is atomic: the new repository state is staged
next to ``REPO`` (existing versions hard-linked, not copied) and swapped in by renames.
Rolling update on a live server (explicit model control: load the called models, then
``dymu``): the called models keep their two newest versions loaded (``version_policy``), so
requests still running on the previous router find the models of their own version while
the new router loads; the router (newest version only) switches after its in-flight
requests complete. tests/serve/test_triton_server.py does this live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import re
import shutil
import site
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dymu_rt.backends import onnx_proto
from dymu_rt.backends.affine import affine_graph
from dymu_rt.bundle.layout import MANIFEST, Manifest, verify_bundle
from dymu_rt.core.errors import BackendUnavailable, BundleError, ValidationError
from dymu_rt.bundle.weight_pool import bundle_fold_params
from dymu_rt.runtime.binding import raw_weights, slot_weights
from dymu_rt.serve.triton import config as C
from dymu_rt.core import routing as R
from dymu_rt.serve.triton.vendor import vendored_files
from dymu_rt.core.io import sha256_file
from dymu_rt.core import safetensors_np
from dymu_rt.serve.triton.repository_check import check_repository

BACKENDS = ("onnxruntime", "tensorrt", "python")
ROUTER = C.ROUTER
EDGE = f"{ROUTER}_edge_hypernet"
WEIGHT = f"{ROUTER}_weight_hypernet"
TOPOLOGY_PREFIX = f"{ROUTER}_topo_"
MAX_BATCH_LIMIT = 4096
MAX_INSTANCES = 64
MAX_THREADS = 256
#: dynamic batcher wait for more requests (topology models and router)
QUEUE_DELAY_US = 500
#: versions of each called model (hypernets, topologies) a server keeps loaded: the newest
#: two, so that while a re-exported repository loads, requests of the previous router version
#: still find the models of their own version (the router always serves only its newest)
CALLED_MODEL_POLICY = {"latest": {"num_versions": 2}}
ROUTER_TEMPLATE = Path(__file__).parent / "router" / "model.py"
#: ``--backend python``: an ONNX model run by ONNX Runtime in the Python backend
PYTHON_MODEL_TEMPLATE = Path(__file__).parent / "python_model" / "model.py"
#: beside every Python-backend model.py: puts ``dymu_rt.site_packages`` on sys.path
SITE_TEMPLATE = Path(__file__).parent / "router" / "dymu_site.py"
PARAM_SITE = "dymu_rt.site_packages"
PARAM_PYTHON = "dymu_rt.python"
PARAM_THREADS = "dymu_rt.threads"
#: what the Python-backend models import from ``dymu_rt.site_packages``
SERVER_MODULES = ("numpy", "onnxruntime")


def topology_model(topology: str) -> str:
    """Triton model name of a topology."""
    return f"{TOPOLOGY_PREFIX}{topology}"


# -- the bundle, read in one place ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BundleView:
    """A verified bundle: its folder, typed manifest and manifest sha256 (which, listing
    every file's sha256, identifies the whole bundle)."""

    root: Path
    manifest: Manifest
    sha256: str

    @property
    def producer(self) -> dict:
        return dict(self.manifest.data.get("producer", {}))

    def file(self, name: str) -> Path:
        """A controller file (``edge_hypernet``, ``weight_hypernet``, ``fold_params``)."""
        return self.root / self.manifest.controller[name].file


def read_bundle(path) -> BundleView:
    """Verify a bundle (every file's sha256) and return it with its manifest's sha256."""
    root = Path(path)
    return BundleView(root, verify_bundle(root), sha256_file(root / MANIFEST))


# -- pieces ---------------------------------------------------------------------------------------

def _io(model, batched: bool) -> tuple[list[dict], list[dict]]:
    """Config inputs/outputs of an ONNX model (path or bytes; batched: drop the batch dim)."""
    ins, outs = C.model_io(model)
    if batched:
        ins, outs = ([{**e, "dims": e["dims"][1:]} for e in es] for es in (ins, outs))
    return ins, outs


def bn_coefficients(view: BundleView) -> dict[str, np.ndarray]:
    """Per slot ``s0, k, h0, m`` with scale = s0 + k·Δγ, shift = h0 + Δβ + m·Δγ, evaluated with
    the one binding formula (:func:`dymu_rt.runtime.binding.slot_weights`) at Δ = 0 and at
    Δγ = 1 (the formula is affine in the deltas; see :mod:`dymu_rt.core.routing`)."""
    m = view.manifest
    params = bundle_fold_params(view.root, m)        # raw conv weights derived (store once)
    slots = [s["name"] for s in m.bn_layout]
    zero = np.zeros(m.bn_delta_size, np.float32)
    unit = zero.copy()
    for s in m.bn_layout:
        unit[int(s["offset"]):int(s["offset"]) + int(s["channels"])] = 1.0      # Δγ = 1, Δβ = 0
    at0 = slot_weights(params, m.bn_layout, zero, m.bn_eps, slots, "affine")
    at1 = slot_weights(params, m.bn_layout, unit, m.bn_eps, slots, "affine")
    out = {}
    for s in slots:
        s0, h0 = at0[f"{s}.scale"].astype(np.float64), at0[f"{s}.shift"].astype(np.float64)
        out[f"{s}.s0"], out[f"{s}.h0"] = s0.astype(np.float32), h0.astype(np.float32)
        out[f"{s}.k"] = (at1[f"{s}.scale"] - s0).astype(np.float32)
        out[f"{s}.m"] = (at1[f"{s}.shift"] - h0).astype(np.float32)
    return out


def _topology_onnx(view: BundleView, topology: str, params: dict):
    """The topology's affine graph (raw conv weights inside; scale/shift inputs)."""
    topo = view.manifest.topologies[topology]
    model = onnx_proto.load_model(view.root / topo.file)        # pulls in the external weights
    model = affine_graph(model, raw_weights(params, topo.bn_slots), topo.bn_slots)
    if model.ByteSize() >= 2 ** 31 - 1:
        raise ValidationError(f"topology {topology} has {model.ByteSize() / 2**30:.1f} GiB of weights; a "
                              "self-contained ONNX model must stay under 2 GiB")
    return model


def _probe_outputs(model, input_size) -> dict[str, list[int]]:
    """Task output dims (batch dropped) from one ONNX Runtime run at batch 1: the exporter
    leaves spatial output dims symbolic, and Triton clients want them concrete. Also proves
    the model loads and runs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL     # one run: skip optimizing
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    h, w = input_size
    feeds = {"image": np.zeros((1, 3, h, w), np.float32)}
    for i in sess.get_inputs()[1:]:
        feeds[i.name] = np.ones((1, *i.shape[1:]), np.float32)
    names = [o.name for o in sess.get_outputs()]
    return {n: list(v.shape[1:]) for n, v in zip(names, sess.run(names, feeds))}


def _instance_group(kind: str, count: int = 1) -> list[dict]:
    return [{"count": count, "kind": C.Enum(kind)}]


def _tensorrt_accelerator(model_name: str) -> dict:
    params = {"precision_mode": "FP32", "max_workspace_size_bytes": str(1 << 30),
              "trt_engine_cache_enable": "1", "trt_engine_cache_path": f"/tmp/dymu_trt_cache/{model_name}"}
    return {"execution_accelerators": {"gpu_execution_accelerator": [
        {"name": "tensorrt", "parameters": [{"key": k, "value": v} for k, v in params.items()]}]}}


# -- the repository -------------------------------------------------------------------------------

@dataclasses.dataclass
class _Plan:
    view: BundleView
    backend: str
    max_batch: int
    version: int
    instances: int = 1
    threads: int = 1
    site_packages: tuple[str, ...] = ()

    @property
    def params(self) -> list[dict]:
        return C.parameters({C.PARAM_BUNDLE_SHA: self.view.sha256, C.PARAM_PRODUCER: self.view.producer,
                             "dymu_rt.backend": self.backend})

    @property
    def settings(self) -> dict:
        """What besides the bundle makes two exports differ (a re-export with the same is a no-op)."""
        return {"backend": self.backend, "max_batch": self.max_batch, "instances": self.instances,
                "threads": self.threads, "site_packages": list(self.site_packages)}


# -- --backend python: dependencies and Python-backend models -----------------------------------

def site_packages_dirs() -> list[str]:
    """The site-packages folders of this Python: its ``site.getsitepackages()`` and every
    ``sys.path`` entry named ``site-packages``/``dist-packages`` (a ``.pth`` file may add a
    second environment's), existing folders only, in ``sys.path`` order."""
    found = [*sys.path, *site.getsitepackages()]
    out: list[str] = []
    for p in found:
        if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir():
            p = str(Path(p).resolve())
            if p not in out:
                out.append(p)
    return out


def resolve_site_packages(site_packages) -> tuple[str, ...]:
    """``--site-packages`` folders (default: :func:`site_packages_dirs`), checked to hold what the
    Python-backend models import (:data:`SERVER_MODULES`); ValidationError otherwise."""
    given = site_packages is not None and len(site_packages) > 0
    dirs = [str(Path(d).resolve()) for d in site_packages] if given else site_packages_dirs()
    for d in dirs:
        if not Path(d).is_dir():
            raise ValidationError(f"--site-packages {d} is not a directory; expected the site-packages folder of "
                                  "a Python environment with numpy and onnxruntime")
    for module in SERVER_MODULES:
        if not any((Path(d) / module).is_dir() for d in dirs):
            where = ", ".join(dirs) or "(none found)"
            raise ValidationError(f"--site-packages {where} holds no {module}; expected the site-packages folder(s) "
                                  f"of a Python {sys.version_info[0]}.{sys.version_info[1]} environment with "
                                  f"{' and '.join(SERVER_MODULES)} (the server's Python backend imports them)")
    return tuple(dirs)


def check_dependencies(check_configs: bool) -> None:
    """Raise BackendUnavailable, before anything is written, when a package the export's
    caller will need is missing: with ``check_configs``, Triton's ModelConfig protobuf
    (``tritonclient[grpc]``) that :func:`dymu_rt.serve.triton.check_repository` parses with."""
    if not check_configs:
        return
    for module in ("google.protobuf.text_format", "tritonclient.grpc.model_config_pb2"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise BackendUnavailable(f"checking the exported configs needs {module} ({e}); pip install "
                                     "'tritonclient[grpc]' (or dymu-rt[triton]), or pass --no-check to export "
                                     "without checking") from None


def _python_parameters(plan: _Plan) -> list[dict]:
    """Parameters of every Python-backend model of a ``--backend python`` export."""
    if plan.backend != "python":
        return []
    return C.parameters({PARAM_SITE: list(plan.site_packages),
                         PARAM_PYTHON: f"{sys.version_info[0]}.{sys.version_info[1]}"})


def _python_onnx_model(plan: _Plan, cfg: dict, onnx_bytes: bytes, count: int) -> tuple[dict, dict[str, bytes]]:
    """An ONNX model's config ``cfg`` (as for the ONNX Runtime backend) turned into a
    Python-backend model running it with ONNX Runtime; returns (config, version files)."""
    cfg = {k: v for k, v in cfg.items() if k not in ("platform", "optimization")}
    cfg = {"name": cfg.pop("name"), "backend": "python", **cfg, "instance_group": _instance_group("KIND_CPU", count)}
    cfg["parameters"] = [*cfg.get("parameters", []), *_python_parameters(plan),
                         *C.parameters({PARAM_THREADS: str(plan.threads)})]
    v = str(plan.version)
    files = {f"{v}/model.onnx": onnx_bytes, f"{v}/model.py": PYTHON_MODEL_TEMPLATE.read_bytes(),
             f"{v}/dymu_site.py": SITE_TEMPLATE.read_bytes()}
    return cfg, files


def _model_files(plan: _Plan, cfg: dict, onnx_bytes: bytes, count: int = 1) -> tuple[dict, dict[str, bytes]]:
    """(config, files relative to the model folder) of one ONNX model in ``plan.backend``'s flavour."""
    if plan.backend == "python":
        return _python_onnx_model(plan, cfg, onnx_bytes, count)
    if count != 1:
        cfg = {**cfg, "instance_group": [{**cfg["instance_group"][0], "count": count}]}
    return cfg, {f"{plan.version}/model.onnx": onnx_bytes}


def _write(path: Path, data: bytes) -> None:
    """Write a file in the staging tree; unlink first: it may be a hard link into the live REPO.
    A folder on the way that is a symbolic link (a user's, copied as a link) is never written
    through: it could point anywhere."""
    for parent in path.parents:
        if parent.name.startswith(".") and ".tmp-" in parent.name:
            break
        if parent.is_symlink():
            raise ValidationError(f"{parent.name} in the repository is a symbolic link; `export triton` does not "
                                  "write through links (they can point outside it): remove it or export elsewhere")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(data)


def _model_versions(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"[1-9][0-9]*", p.name))


def _existing(out: Path) -> tuple[int, Optional[dict]]:
    """(highest version of any dymu model in ``out``, the newest router's spec or None);
    refuses an ``out`` that holds something else."""
    if not out.exists():
        return 0, None
    if not out.is_dir():
        raise ValidationError(f"--out {out} exists and is not a directory; expected a new folder or a Triton "
                              "repository written by `dymu-rt export triton`")
    entries = list(out.iterdir())
    if not entries:
        return 0, None
    router = out / ROUTER
    if not (router / "config.pbtxt").is_file():
        raise ValidationError(f"--out {out} is not empty and holds no {ROUTER}/config.pbtxt; expected a new "
                              "folder or a Triton repository written by `dymu-rt export triton`")
    top = 0
    for d in entries:
        if d.is_dir() and d.name.startswith(ROUTER) and (d / "config.pbtxt").is_file():
            top = max([top, *_model_versions(d)])
    versions = _model_versions(router)
    spec = None
    if versions:
        try:
            spec = json.loads((router / str(versions[-1]) / R.SPEC_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            spec = None
    return top, spec


def _router_files(plan: _Plan, bn: dict, topo_io: dict[str, tuple[list, list]], hyper_out: dict) -> dict[str, bytes]:
    view, m = plan.view, plan.view.manifest
    spec = {
        "kind": R.SPEC_KIND, "bundle_sha256": view.sha256, "producer": view.producer, **plan.settings,
        "version": plan.version, "n_tasks": m.n_tasks,
        "num_layers": m.num_layers, "topology_salt": m.topology_salt,
        "tasks": [dataclasses.asdict(t) for t in m.tasks], "input_size": list(m.input_size),
        "models": {"edge_hypernet": EDGE, "weight_hypernet": WEIGHT, "edge_output": hyper_out[EDGE],
                   "weight_output": hyper_out[WEIGHT]},
        "topologies": {tid: {"model": topology_model(tid), "slots": list(t.bn_slots), "params": int(t.params),
                             "macs": int(t.macs), "gmacs": t.gmacs}
                       for tid, t in sorted(m.topologies.items())},
        "points": [{"r": list(p.r), "c": p.c, "topology": p.topology} for p in m.points],
        "bn_layout": {s["name"]: [int(s["offset"]), int(s["channels"])] for s in m.bn_layout},
        "outputs": {o["name"]: o["dims"] for o in next(iter(topo_io.values()))[1]},
    }
    files = {f"{plan.version}/{k}": v for k, v in vendored_files().items()}
    files[f"{plan.version}/model.py"] = ROUTER_TEMPLATE.read_bytes()
    files[f"{plan.version}/dymu_site.py"] = SITE_TEMPLATE.read_bytes()
    files[f"{plan.version}/{R.SPEC_FILE}"] = (json.dumps(spec, indent=1, sort_keys=True) + "\n").encode()
    files[f"{plan.version}/{R.BN_FILE}"] = safetensors_np.dumps(bn, {"bundle_sha256": view.sha256})
    return files


def _router_config(plan: _Plan, outputs: list[dict]) -> dict:
    h, w = plan.view.manifest.input_size
    n = plan.view.manifest.n_tasks
    return {
        "name": ROUTER, "backend": "python", "max_batch_size": plan.max_batch,
        "input": [C.tensor("image", "TYPE_FP32", [3, h, w]), C.tensor("r", "TYPE_FP32", [n]),
                  C.tensor("c", "TYPE_FP32", [1])],
        "output": [*outputs, C.tensor("topology", "TYPE_STRING", [1]), C.tensor("binding", "TYPE_STRING", [1]),
                   C.tensor("grid_point", "TYPE_FP32", [n + 1]), C.tensor("gmacs", "TYPE_FP32", [1]),
                   C.tensor("params", "TYPE_INT64", [1])],
        "instance_group": _instance_group("KIND_CPU", 2),
        "dynamic_batching": {"max_queue_delay_microseconds": QUEUE_DELAY_US},
        # clients read it with get_model_config("dymu"): how to turn a picture into `image`
        "parameters": plan.params + C.parameters({"dymu_rt.preprocessing": dict(plan.view.manifest.preprocessing)})
        + _python_parameters(plan),
    }


#: settings of repositories exported before they were recorded in router.json
_SETTING_DEFAULTS = {"instances": 1, "threads": 1, "site_packages": []}


def _check_count(option: str, value, top: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise ValidationError(f"{option} {value!r}; expected an integer from 1 to {top}")


def export_triton(bundle, out, backend: str = "onnxruntime", max_batch: int = 8,
                  on_step: Optional[Callable[[str, int], None]] = None, instances: int = 1, threads: int = 1,
                  site_packages=None, check_configs: bool = False, check: bool = False) -> dict[str, Any]:
    """Write (or add a version to) the Triton model repository ``out`` for ``bundle``.

    ``instances``: instances of each topology model; ``threads``: ONNX Runtime intra-op
    threads per instance (``backend="python"``); ``site_packages``: folders holding numpy and
    onnxruntime for the server's Python backend (``backend="python"``; default: this
    Python's). ``check_configs``: the caller will check the configs, so Triton's ModelConfig
    protobuf must be importable (checked before anything is written).

    Returns a summary: ``repo``, ``version``, ``noop`` (same bundle and settings already
    exported), ``models`` (names), ``topologies``, ``bundle_sha256``, ``backend``,
    ``max_batch``. ``on_step(name)`` is called after each model is staged (progress).
    ``check``: check the staged repository (:func:`dymu_rt.serve.triton.repository_check.check_repository`,
    when tritonclient is installed) *before* it replaces the live one (summary ``checked``,
    ``problems``; a failed check leaves the live repository as it was). The export holds a
    lock (flock on the folder that holds it) so concurrent exports run one after the other; a symbolic
    link ``--out`` stays a link (its target folder is what is replaced), links inside the
    repository are kept as links and never written through.
    """
    if backend not in BACKENDS:
        raise ValidationError(f"--backend {backend!r} is unknown; expected one of {', '.join(BACKENDS)}")
    _check_count("--max-batch", max_batch, MAX_BATCH_LIMIT)
    _check_count("--instances", instances, MAX_INSTANCES)
    _check_count("--threads", threads, MAX_THREADS)
    if backend != "python" and (threads != 1 or site_packages):
        raise ValidationError(f"--threads/--site-packages apply to --backend python, not {backend!r}")
    sites = resolve_site_packages(site_packages) if backend == "python" else ()
    check_dependencies(check_configs)
    shown = Path(out)
    out = _real_out(shown)
    view = read_bundle(bundle)
    if view.manifest.static:
        raise ValidationError(f"bundle {view.root} is a static {view.manifest.static.get('method', '')} bundle (one "
                              "fixed architecture, no controller); `export triton` serves DYMU bundles: serve this "
                              "one with `dymu-rt run`")
    if out.resolve() == view.root.resolve() or view.root.resolve() in out.resolve().parents:
        raise ValidationError(f"--out {shown} is inside the bundle {view.root}; choose a folder outside it")
    with _repo_lock(out):
        return _export_locked(view, out, shown, backend, max_batch, on_step, check, instances, threads, sites)


def _export_locked(view, out: Path, shown: Path, backend: str, max_batch: int, on_step, check: bool,
                   instances: int, threads: int, sites: tuple) -> dict:
    """export_triton under the repository's lock: stage, check, swap."""
    _clean_stale(out)
    top, spec = _existing(out)
    m = view.manifest
    summary = {"repo": str(shown), "bundle_sha256": view.sha256, "backend": backend, "max_batch": max_batch,
               "instances": instances, "threads": threads, "topologies": len(m.topologies)}
    plan = _Plan(view, backend, max_batch, top + 1, instances, threads, sites)
    if spec is not None and spec.get("bundle_sha256") == view.sha256 and \
            all(spec.get(k, _SETTING_DEFAULTS.get(k)) == want for k, want in plan.settings.items()):
        return {**summary, "version": int(spec.get("version", top)), "noop": True,
                "models": sorted(p.name for p in out.iterdir() if p.is_dir())}
    v = str(plan.version)
    total = len(m.topologies) + 3
    step = (lambda name: on_step(name, total)) if on_step else (lambda name: None)

    stage = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        if out.exists():
            shutil.copytree(out, stage, symlinks=True, copy_function=_link_or_copy)
        else:
            stage.mkdir(parents=True)
        models: list[str] = []

        # hypernets: the bundle's ONNX graphs as they are (batch 1, CPU)
        hyper_out = {}
        for name, src in ((EDGE, view.file("edge_hypernet")), (WEIGHT, view.file("weight_hypernet"))):
            ins, outs = _io(src, batched=False)
            hyper_out[name] = outs[0]["name"]
            cfg = {"name": name, "platform": "onnxruntime_onnx", "max_batch_size": 0, "input": ins, "output": outs,
                   "instance_group": _instance_group("KIND_CPU"), "version_policy": CALLED_MODEL_POLICY,
                   "parameters": plan.params}
            cfg, files = _model_files(plan, cfg, src.read_bytes())
            for rel, data in files.items():
                _write(stage / name / rel, data)
            _write(stage / name / "config.pbtxt", C.to_pbtxt(cfg).encode())
            models.append(name)
            step(name)

        # one model per topology
        params = bundle_fold_params(view.root, m)    # raw conv weights derived (store once)
        topo_io = {}
        gpu = backend == "tensorrt"
        for tid in sorted(m.topologies):
            name = topology_model(tid)
            model = _topology_onnx(view, tid, params)
            ins, outs = _io(model.SerializeToString(), batched=True)
            dims = _probe_outputs(model, m.input_size)
            outs = [C.tensor(o["name"], o["data_type"], dims[o["name"]]) for o in outs]
            if topo_io and outs != next(iter(topo_io.values()))[1]:
                raise ValidationError(f"bundle {view.root}: topology {tid} has task outputs {outs}, unlike the "
                                      "others; rebuild the bundle")
            topo_io[tid] = (ins, outs)
            cfg = {"name": name, "platform": "onnxruntime_onnx", "max_batch_size": max_batch, "input": ins,
                   "output": outs, "instance_group": _instance_group("KIND_GPU" if gpu else "KIND_CPU"),
                   "version_policy": CALLED_MODEL_POLICY,
                   "dynamic_batching": {"max_queue_delay_microseconds": QUEUE_DELAY_US}}
            if gpu:
                cfg["optimization"] = _tensorrt_accelerator(name)
            cfg["parameters"] = plan.params + C.parameters({"dymu_rt.topology": tid})
            cfg, files = _model_files(plan, cfg, model.SerializeToString(), instances)
            for rel, data in files.items():
                _write(stage / name / rel, data)
            _write(stage / name / "config.pbtxt", C.to_pbtxt(cfg).encode())
            models.append(name)
            step(name)

        # the router, last
        for rel, data in _router_files(plan, bn_coefficients(view), topo_io, hyper_out).items():
            _write(stage / ROUTER / rel, data)
        _write(stage / ROUTER / "config.pbtxt",
               C.to_pbtxt(_router_config(plan, next(iter(topo_io.values()))[1])).encode())
        models.append(ROUTER)
        step(ROUTER)
        if check:
            _check_stage(stage, summary, shown)
        _swap(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return {**summary, "version": plan.version, "noop": False, "models": sorted(models)}


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _swap(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage`` with renames (a reader sees the old or the new repository)."""
    if not out.exists():
        os.rename(stage, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    os.rename(stage, out)
    shutil.rmtree(old, ignore_errors=True)


# -- the repository's lock, staging and swap ------------------------------------------------------

def _real_out(out: Path) -> Path:
    """``--out`` with a symbolic link resolved (the link stays; its target is the repository)."""
    if out.is_symlink():
        if not out.exists():
            raise ValidationError(f"--out {out} is a symbolic link to nothing ({os.readlink(out)}); give a folder")
        return Path(os.path.realpath(out))
    return out


@contextlib.contextmanager
def _repo_lock(out: Path):
    """An exclusive flock on the repository's parent folder (released by the kernel if the
    process dies; nothing is left beside the repository), so two exports into one
    repository run one after the other (exports into siblings wait for each other too)."""
    parent = out.parent
    if not parent.is_dir():
        raise ValidationError(f"--out {out}: its folder {parent} does not exist")
    with _THREAD_LOCK:
        try:
            import fcntl
        except ImportError:          # pragma: no cover - not on Linux/macOS
            yield
            return
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


_THREAD_LOCK = threading.RLock()
_STALE = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>[0-9]+)")


def _clean_stale(out: Path) -> None:
    """Remove this command's staging folders (``.REPO.tmp-PID``, ``.REPO.old-PID``) left by
    exports whose process is gone (killed); a live export's are left alone."""
    for p in out.parent.iterdir():
        m = _STALE.fullmatch(p.name)
        if not m or m.group("name") != out.name or p.is_symlink() or not p.is_dir():
            continue
        pid = int(m.group("pid"))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(p, ignore_errors=True)


def _check_stage(stage: Path, summary: dict, shown: Path) -> None:
    try:
        problems = check_repository(stage)
        summary["checked"] = "every config.pbtxt parsed with Triton's ModelConfig; inputs/outputs match the models"
    except BackendUnavailable as e:
        problems, summary["checked"] = [], f"not checked: {e}"
    summary["problems"] = problems
    if problems:
        raise BundleError(f"the exported repository failed its check ({problems[0]}"
                          + (f" and {len(problems) - 1} more" if len(problems) > 1 else "")
                          + f"); {shown} was left as it was")

