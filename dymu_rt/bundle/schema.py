"""The manifest's schema: types, ranges, names, nesting, and the checks across sections.

:func:`validate_manifest` is run on every read of a manifest. It refuses, in one line that
names the key path and what was expected, anything a hostile or damaged manifest could
use to crash a reader (a string where a table is expected, a bool schema version, a
200,000-deep nesting), to reach outside the bundle (a topology id or file entry that is a
path elsewhere) or to exhaust memory (a 60000 x 60000 input size, millions of points).
It also checks what must agree between sections: every point's r has one entry per task
and names a known topology; each topology's graph is ``graphs/<id>.onnx``; the BN layout
is contiguous and covers ``bn_delta_size``; engine and INT8 files live in their folders.
A manifest with a ``static`` section (an AdaShare / DAG bundle) is checked against the
static form instead: exactly one topology, no points, no controller, no BN layout.

Values that are well-formed but edited (a different ``bn_eps``) pass the schema; the
manifest checksum (:mod:`dymu_rt.bundle.checksum`) catches those.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from dymu_rt.bundle.paths import TOPOLOGY_ID_RE, check_name, check_relpath
from dymu_rt.core.errors import BundleError

#: Deepest nesting of lists/tables anywhere in a manifest (real ones: 6).
MAX_NESTING = 16
MAX_TASKS = 64
MAX_POINTS = 1_000_000
MAX_TOPOLOGIES = 100_000
MAX_STRING = 4096
#: Largest network input a bundle may ask for: each side, and H x W (the paper's largest
#: input is 512 x 512; a float32 RGB batch of one at the limit is 192 MB).
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 16_000_000
SHA256_LEN = 64

Check = Callable[[Any, str], None]


class _Bad(Exception):
    pass


def _short(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fail(path: str, value, expected: str):
    raise BundleError(f"manifest {path} = {_short(value)}: expected {expected}")


def check_nesting(obj, limit: int = MAX_NESTING) -> None:
    """Refuse a document nested deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise BundleError(f"manifest is nested more than {limit} levels deep; not a dymu-rt manifest")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


# -- value checks --------------------------------------------------------------------------

def integer(lo: int | None = None, hi: int | None = None) -> Check:
    def f(v, path):
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(path, v, f"an integer{'' if lo is None else f' >= {lo}'}{'' if hi is None else f' <= {hi}'}")
    return f


def number(lo: float | None = None, hi: float | None = None, positive: bool = False) -> Check:
    def f(v, path):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi) and (not positive or v > 0)
        if not ok:
            rng = "a finite number" + (" > 0" if positive else "") + (f" >= {lo}" if lo is not None else "") + (
                f" <= {hi}" if hi is not None else "")
            _fail(path, v, rng)
    return f


def boolean(v, path):
    if not isinstance(v, bool):
        _fail(path, v, "true or false")


def string(max_len: int = MAX_STRING) -> Check:
    def f(v, path):
        if not isinstance(v, str) or len(v) > max_len:
            _fail(path, v, f"a string of at most {max_len} characters")
    return f


def sha256(v, path):
    if not isinstance(v, str) or len(v) != SHA256_LEN or any(c not in "0123456789abcdef" for c in v):
        _fail(path, v, "a sha256 (64 lowercase hex digits)")


def relpath(v, path):
    check_relpath(v, f"manifest {path}")


def topology_id(v, path):
    if not isinstance(v, str) or not TOPOLOGY_ID_RE.fullmatch(v):
        _fail(path, v, "a topology id (8-64 lowercase hex digits)")


def name(v, path):
    check_name(v, f"manifest {path}")


def one_of(*values) -> Check:
    def f(v, path):
        if isinstance(v, bool) or v not in values:
            _fail(path, v, " or ".join(map(repr, values)))
    return f


def array(item: Check, min_len: int = 0, max_len: int = MAX_POINTS) -> Check:
    def f(v, path):
        # tuples too: a manifest built in memory (before JSON) holds them
        if not isinstance(v, (list, tuple)) or not min_len <= len(v) <= max_len:
            _fail(path, v, f"a list of {min_len}..{max_len} entries")
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
    return f


def table(fields: Mapping[str, Check], optional: Mapping[str, Check] = (), extra: Check | None = None) -> Check:
    """A JSON object with required ``fields``, ``optional`` ones, and other keys checked by
    ``extra`` (None: other keys are allowed and not checked, for forward compatibility)."""
    optional = dict(optional)

    def f(v, path):
        if not isinstance(v, dict):
            _fail(path, v, "a table (JSON object)")
        for k, check in fields.items():
            if k not in v:
                raise BundleError(f"manifest {path} lacks key {k!r}")
            check(v[k], f"{path}.{k}")
        for k, check in optional.items():
            if k in v and v[k] is not None:
                check(v[k], f"{path}.{k}")
        if extra is not None:
            for k, x in v.items():
                if k not in fields and k not in optional:
                    extra(x, f"{path}.{k}")
    return f


def mapping(key: Check, value: Check, max_len: int = MAX_TOPOLOGIES) -> Check:
    def f(v, path):
        if not isinstance(v, dict) or len(v) > max_len:
            _fail(path, v, f"a table of at most {max_len} entries")
        for k, x in v.items():
            key(k, f"{path} key")
            value(x, f"{path}.{k}")
    return f


def scalar(v, path):
    if v is not None and not isinstance(v, (str, int, float, bool)):
        _fail(path, v, "a string, number or boolean")
    if isinstance(v, str) and len(v) > MAX_STRING:
        _fail(path, v, f"a string of at most {MAX_STRING} characters")


def _any_small(v, path):
    """Free-form informational data (producer versions, build facts): scalars, lists, tables."""
    if isinstance(v, dict):
        for k, x in v.items():
            string(256)(k, f"{path} key")
            _any_small(x, f"{path}.{k}")
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _any_small(x, f"{path}[{i}]")
    else:
        scalar(v, path)


def _fail_any(v, path):
    _fail(path, v, "no entry (a static bundle has no controller)")


def _file_entry(extra: Mapping[str, Check] = ()) -> Check:
    return table({"file": relpath, "sha256": sha256}, optional=extra)


_TASK = table({"name": name, "kind": string(64), "out_channels": integer(1, 100_000)})
_PREPROCESSING = table({
    "input_size": array(integer(1, MAX_INPUT_SIDE), 2, 2), "scale": number(positive=True, hi=1.0),
    "mean": array(number(), 3, 3), "std": array(number(positive=True), 3, 3),
}, optional={"color": one_of("RGB"), "normalize_in_graph": boolean})
_GRID = table({"step": number(positive=True, hi=1), "n_points": integer(0, MAX_POINTS)},
              optional={"c_step": number(positive=True, hi=1)})
_POINT = table({"r": array(number(0.0, 1.0 + 1e-6), 1, MAX_TASKS), "c": number(0.0, 1.0), "topology": topology_id})
_TOPOLOGY = table({
    "parents": array(array(integer(-1, MAX_TASKS), 1, MAX_TASKS), 1, 1024),
    "params": integer(0), "macs": integer(0), "file": relpath, "sha256": sha256,
}, optional={"gmacs": number(0.0), "n_points": integer(0), "bn_slots": array(string(512), 0, 100_000),
             "weights": string(64), "exported_at": _any_small})
_WEIGHTS = table({
    "file": relpath, "sha256": sha256, "bytes": integer(0),
    "tensors": mapping(string(512), table({"offset": integer(0), "length": integer(0), "sha256": sha256,
                                           "dtype": string(32), "shape": array(integer(0), 0, 8)}), 1_000_000),
}, optional={"at": string(64), "bn_deltas": number(), "binding": string(64), "inline_below": integer(0),
             "align": integer(1)})
_CONTROLLER = table({"edge_hypernet": _file_entry(), "weight_hypernet": _file_entry(), "fold_params": _file_entry()})
_BN_SLOT = table({"name": string(512), "layer": integer(0), "stream": integer(0), "channels": integer(1),
                  "offset": integer(0)})
_LATENCY_ROW = table({"p50_ms": number(0.0), "p90_ms": number(0.0), "p99_ms": number(0.0)},
                     optional={"batch": integer(1), "iters": integer(1)})
_ENGINE_PROFILE = table({"files": mapping(topology_id, _file_entry())}, extra=_any_small)
# Schema 3: calibration stores the tensor ranges only (the Q/DQ graphs are derived at use).
_INT8 = table({"files": mapping(topology_id, table({"key": string(256), "ranges": _file_entry()}))},
              extra=_any_small)

_MANIFEST = table({
    "schema_version": integer(), "kind": one_of("dymu-rt-bundle"), "producer": _any_small,
    "preset": _any_small, "tasks": array(_TASK, 1, MAX_TASKS), "preprocessing": _PREPROCESSING,
    "grid": _GRID, "points": array(_POINT, 1, MAX_POINTS),
    "topologies": mapping(topology_id, _TOPOLOGY), "controller": _CONTROLLER,
    "bn_layout": array(_BN_SLOT, 0, 1_000_000), "bn_eps": number(positive=True, hi=1.0),
    "topology_salt": string(256),
}, optional={
    "weights": _WEIGHTS, "latency": mapping(name, mapping(topology_id, _LATENCY_ROW), 1024),
    "engines": mapping(name, mapping(name, _ENGINE_PROFILE, 1024), 64), "int8": _INT8,
    "bn_delta_size": integer(0), "num_layers": integer(1, 1024), "build": _any_small,
    "preset_config": _any_small, "trained_on": string(), "training_data": string(),
})

# A static bundle (AdaShare / DAG, dymu_rt.compile.build, StaticLowering): one fixed architecture, so no
# grid, no points, no controller, no BN layout; exactly one topology (its id is a topology
# id like any other), no parent table. Every other section is checked as above.
# method: the static methods, or a DYMU run's fixed baselines as `dymu-rt compare` deploys them
# (dymu-retrained: a DYMU tree trained again as a static net, `compare --retrain`).
#: The method names a static bundle may carry: the registered static methods
#: (dymu_rt.methods, whose ``bundle`` is "static"). Spelled here as data because the deploy
#: wing reads bundles without importing the train wing; tests/methods/test_registry.py checks
#: that the two lists agree (a new static method must be added here to open).
STATIC_METHODS = ("adashare", "dag", "single-task", "phn-bn", "dymu-retrained")
_STATIC_SECTION = table({"method": one_of(*STATIC_METHODS),
                         "graph": _any_small},
                        optional={"shared_modules": array(string(512), 0, 100_000), "preference": string()})
_STATIC_GRID = table({"n_points": integer(0, 0)},
                     optional={"step": number(positive=True, hi=1), "c_step": number(positive=True, hi=1)})
_STATIC_TOPOLOGY = table({
    "parents": array(array(integer(-1, MAX_TASKS), 1, MAX_TASKS), 0, 0),
    "params": integer(0), "macs": integer(0), "file": relpath, "sha256": sha256,
}, optional={"gmacs": number(0.0), "gflops_paper": number(0.0), "n_points": integer(0, 0),
             "bn_slots": array(string(512), 0, 0), "weights": one_of("static"), "exported_at": _any_small})
_STATIC_MANIFEST = table({
    "schema_version": integer(), "kind": one_of("dymu-rt-bundle"), "producer": _any_small,
    "preset": _any_small, "tasks": array(_TASK, 1, MAX_TASKS), "preprocessing": _PREPROCESSING,
    "grid": _STATIC_GRID, "points": array(_POINT, 0, 0),
    "topologies": mapping(topology_id, _STATIC_TOPOLOGY, 1), "controller": table({}, extra=_fail_any),
    "bn_layout": array(_BN_SLOT, 0, 0), "bn_eps": number(positive=True, hi=1.0),
    "topology_salt": string(256), "static": _STATIC_SECTION,
}, optional={
    "weights": _WEIGHTS, "latency": mapping(name, mapping(topology_id, _LATENCY_ROW), 1024),
    "engines": mapping(name, mapping(name, _ENGINE_PROFILE, 1024), 64), "int8": _INT8,
    "bn_delta_size": integer(0, 0), "num_layers": integer(0, 0), "build": _any_small,
    "preset_config": _any_small, "trained_on": string(), "training_data": string(),
})


#: Fixed paths of a bundle (dymu_rt.bundle.layout names them; repeated here because the
#: layout imports the manifest, which imports this module).
GRAPHS_DIR = "graphs"
WEIGHTS_FILE = "graphs/weights.bin"
CONTROLLER_FILES = {"edge_hypernet": "controller/edge_hypernet.onnx",
                    "weight_hypernet": "controller/weight_hypernet.onnx",
                    "fold_params": "controller/fold_params.safetensors"}


def check_schema(m: Any, graphs_dir: str = GRAPHS_DIR, weights_file: str = WEIGHTS_FILE,
                 controller_files: Mapping[str, str] | None = None) -> dict:
    """Return ``m`` if it is a well-formed manifest (see the module docstring), else raise a
    one-line BundleError naming the first bad key."""
    controller_files = CONTROLLER_FILES if controller_files is None else controller_files
    check_nesting(m)
    static = isinstance(m, dict) and m.get("static") is not None
    (_STATIC_MANIFEST if static else _MANIFEST)(m, "")
    if static and len(m["topologies"]) != 1:
        _fail(".topologies", sorted(m["topologies"]), "exactly one topology (a static bundle)")
    h, w = m["preprocessing"]["input_size"]
    if h * w > MAX_INPUT_PIXELS:
        _fail(".preprocessing.input_size", [h, w], f"at most {MAX_INPUT_PIXELS:,} pixels")
    n = len(m["tasks"])
    topologies = m["topologies"]
    for i, p in enumerate(m["points"]):
        if len(p["r"]) != n:
            _fail(f".points[{i}].r", p["r"], f"{n} entries (one per task)")
        if p["topology"] not in topologies:
            _fail(f".points[{i}].topology", p["topology"], "a topology listed under 'topologies'")
    for tid, t in topologies.items():
        if t["file"] != f"{graphs_dir}/{tid}.onnx":
            _fail(f".topologies.{tid}.file", t["file"], f"{graphs_dir}/{tid}.onnx")
    if "weights" in m and m["weights"] is not None and m["weights"]["file"] != weights_file:
        _fail(".weights.file", m["weights"]["file"], weights_file)
    for k, f in ({} if static else controller_files or {}).items():
        if m["controller"][k]["file"] != f:
            _fail(f".controller.{k}.file", m["controller"][k]["file"], f)
    offset = 0
    for i, s in enumerate(m["bn_layout"]):
        if s["offset"] != offset:
            _fail(f".bn_layout[{i}].offset", s["offset"], f"{offset} (the slots are contiguous)")
        offset += 2 * s["channels"]
    if m.get("bn_delta_size") is not None and m["bn_delta_size"] != offset:
        _fail(".bn_delta_size", m["bn_delta_size"], f"{offset} (the BN layout's size)")
    slots = {s["name"] for s in m["bn_layout"]}
    for tid, t in topologies.items():
        missing = [s for s in t.get("bn_slots") or () if s not in slots]
        if missing:
            _fail(f".topologies.{tid}.bn_slots", missing[:3], "names from bn_layout")
    for backend, profiles in (m.get("engines") or {}).items():
        for prof, rec in profiles.items():
            for tid, e in rec["files"].items():
                if not e["file"].startswith(f"engines/{backend}/{prof}/"):
                    _fail(f".engines.{backend}.{prof}.files.{tid}.file", e["file"], f"a file in engines/{backend}/{prof}/")
    for tid, e in ((m.get("int8") or {}).get("files") or {}).items():
        f = e["ranges"]["file"]
        if not f.startswith(f"calibration/{tid}/"):
            _fail(f".int8.files.{tid}.ranges.file", f, f"a file in calibration/{tid}/")
    return m
