"""Check an exported Triton repository without a server.

Every ``config.pbtxt`` is parsed with Triton's own ``ModelConfig`` protobuf (from the
optional ``tritonclient[grpc]``); the inputs and outputs it names must exist in the model
file of every version folder with the same data type and shape (the batch dimension added
in front when ``max_batch_size`` > 0; ``-1`` matches a symbolic dimension). The router's
config must agree with its ``router.json``, and every model the router calls must exist at
the router's version.
"""

from __future__ import annotations

import json
from pathlib import Path

from dymu_rt.serve.triton import config as C
from dymu_rt.core import routing as R


def _model_io(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (Triton data type, dims with -1 for symbolic) of an ONNX model's inputs and outputs."""
    ins, outs = C.model_io(path)
    return {e["name"]: (str(e["data_type"]), e["dims"]) for e in [*ins, *outs]}


def _dtype_name(enum_value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(enum_value)


def check_repository(repo) -> list[str]:
    """Problems found in ``repo`` (empty list: every check passed)."""
    repo = Path(repo)
    problems: list[str] = []
    configs = {}
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        path = folder / "config.pbtxt"
        if not path.is_file():
            problems.append(f"{folder.name}: no config.pbtxt")
            continue
        try:
            cfg = C.parse_config(path)
        except Exception as e:   # text_format.ParseError names the line and the unknown field
            problems.append(f"{folder.name}/config.pbtxt does not parse as a Triton ModelConfig: {e}")
            continue
        configs[folder.name] = cfg
        if cfg.name != folder.name:
            problems.append(f"{folder.name}: config name {cfg.name!r} differs from its folder")
        versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        if not versions:
            problems.append(f"{folder.name}: no version folder")
        if cfg.platform == "onnxruntime_onnx" or (cfg.backend == "python" and folder.name != C.ROUTER):
            for v in versions:   # ONNX Runtime backend, or the Python backend running model.onnx
                problems += _check_onnx(folder.name, cfg, v / "model.onnx")
    router = configs.get(C.ROUTER)
    if router is None:
        problems.append(f"no router model '{C.ROUTER}'")
    else:
        problems += _check_router(repo, router, configs)
    return problems


def _check_onnx(name: str, cfg, path: Path) -> list[str]:
    if not path.is_file():
        return [f"{name}: {path.parent.name}/model.onnx is missing"]
    io = _model_io(path)
    problems = []
    for kind, entries in (("input", cfg.input), ("output", cfg.output)):
        for t in entries:
            if t.name not in io:
                problems.append(f"{name} v{path.parent.name}: {kind} {t.name!r} is not in model.onnx")
                continue
            dtype, dims = io[t.name]
            want = ([-1] if cfg.max_batch_size > 0 else []) + list(t.dims)
            if _dtype_name(t.data_type) != dtype or len(want) != len(dims) or any(
                    a != b and not (a == -1 or b == -1) for a, b in zip(want, dims)):
                problems.append(f"{name} v{path.parent.name}: {kind} {t.name!r} is {_dtype_name(t.data_type)} "
                                f"{want} in config.pbtxt but {dtype} {dims} in model.onnx")
            elif cfg.max_batch_size > 0 and dims[0] != -1:
                problems.append(f"{name} v{path.parent.name}: {kind} {t.name!r} has a fixed first dimension "
                                f"{dims[0]}; batching needs it dynamic")
    for e in C.model_io(path)[0]:
        if e["name"] not in {t.name for t in cfg.input}:
            problems.append(f"{name} v{path.parent.name}: model input {e['name']!r} is not declared in config.pbtxt")
    return problems


def _check_router(repo: Path, cfg, configs: dict) -> list[str]:
    problems = []
    if cfg.backend != "python":
        problems.append(f"dymu: backend {cfg.backend!r}, expected 'python'")
    versions = sorted(int(p.name) for p in (repo / C.ROUTER).iterdir() if p.is_dir() and p.name.isdigit())
    for v in versions:
        folder = repo / C.ROUTER / str(v)
        if not (folder / "model.py").is_file():
            problems.append(f"dymu v{v}: model.py is missing")
        spec = json.loads((folder / R.SPEC_FILE).read_text())
        n = int(spec["n_tasks"])
        h, w = spec["input_size"]
        want_in = {"image": ("TYPE_FP32", [3, h, w]), "r": ("TYPE_FP32", [n]), "c": ("TYPE_FP32", [1])}
        want_out = {t: ("TYPE_FP32", list(d)) for t, d in spec["outputs"].items()}
        want_out.update({"topology": ("TYPE_STRING", [1]), "binding": ("TYPE_STRING", [1]),
                         "grid_point": ("TYPE_FP32", [n + 1]), "gmacs": ("TYPE_FP32", [1]),
                         "params": ("TYPE_INT64", [1])})
        for kind, entries, want in (("input", cfg.input, want_in), ("output", cfg.output, want_out)):
            have = {t.name: (_dtype_name(t.data_type), list(t.dims)) for t in entries}
            if have != want:
                problems.append(f"dymu v{v}: {kind}s {have} in config.pbtxt; router.json implies {want}")
        called = [spec["models"]["edge_hypernet"], spec["models"]["weight_hypernet"],
                  *(t["model"] for t in spec["topologies"].values())]
        for model in called:
            if model not in configs:
                problems.append(f"dymu v{v} calls model {model!r}, which the repository lacks")
            elif not (repo / model / str(v)).is_dir():
                problems.append(f"dymu v{v} calls {model!r} at version {v}, which it lacks")
            elif model.startswith("dymu_topo_"):
                cfg_t = configs[model]
                outs = {t.name: list(t.dims) for t in cfg_t.output}
                if outs != {k: d for k, (_, d) in want_out.items() if k in spec["outputs"]}:
                    problems.append(f"dymu v{v}: task outputs of {model} {outs} differ from the router's")
                if cfg_t.max_batch_size < cfg.max_batch_size:
                    problems.append(f"dymu v{v}: {model} batches at most {cfg_t.max_batch_size}, less than "
                                    f"the router's {cfg.max_batch_size}")
    return problems
