"""The typed bundle manifest: one reader (:func:`read_manifest`), one writer (:func:`write_manifest`).

``manifest.json`` (docs/INTERFACES.md, schema 2) is parsed once into a frozen
:class:`Manifest`: tasks, preprocessing, grid points, :class:`TopologyEntry` per topology
(with ``.gmacs`` / ``.gflops``: the one place MACs become the paper's units), the
controller files, the BN layout and the three run-time sections (``engines``, ``latency``,
``int8``, see :mod:`dymu_rt.bundle.sections`). Nothing else reads the manifest by string keys.

Reading validates the JSON against :data:`SCHEMA` before anything is trusted: a wrong type,
a ``true`` schema version, a missing key or a pathologically nested document is one
``BundleError`` line naming the key and what was expected. :meth:`Manifest.from_dict` is the
single door every manifest goes through (read from disk, written by the build, edited by a
section writer): checks that later need to see every manifest (path containment, a
checksum of the canonical content) belong in :func:`validate_manifest`.

The parsed manifest keeps the document it came from (``Manifest.data``, a private deep
copy) so a writer round-trips keys this version does not model (forward-compatible
additions such as ``preset_config`` or ``training_data``).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from dymu_rt.bundle.checksum import verify_checksum, write_with_checksum
from dymu_rt.bundle.lock import LOCK_FILE, bundle_lock
from dymu_rt.bundle.paths import bundle_root, inside
from dymu_rt.bundle.schema import check_schema
from dymu_rt.core.errors import BundleError
from dymu_rt.core import units

SCHEMA_VERSION = 3
#: Schema versions this dymu-rt reads (1: self-contained graphs, no ``weights`` section).
READABLE_SCHEMAS = (3,)
KIND = "dymu-rt-bundle"
MANIFEST = "manifest.json"
#: Deeper JSON than this is refused before parsing it into objects (a manifest is ~5 deep).
MAX_DEPTH = 32

# -- schema ----------------------------------------------------------------------------------
# A tiny structural schema: a type (or tuple of types), {key: spec} for an object with those
# required keys (extra keys allowed), [spec] for a list of spec, MapOf(spec) for an object of
# arbitrary keys. Enough to turn a hand-edited or hostile manifest into one clear line.


@dataclass(frozen=True)
class MapOf:
    """Schema: an object whose values all follow ``spec``."""

    spec: Any


@dataclass(frozen=True)
class Optional_:
    """Schema: a key that may be absent."""

    spec: Any


_NUM = (int, float)
_FILE = {"file": str, "sha256": str}
SCHEMA: dict[str, Any] = {
    "schema_version": int,
    "kind": str,
    "producer": MapOf(str),
    "preset": str,
    "tasks": [{"name": str, "kind": str, "out_channels": int}],
    "preprocessing": {"input_size": [int], "mean": [_NUM], "std": [_NUM], "scale": _NUM,
                      "normalize_in_graph": Optional_(bool), "color": Optional_(str)},
    "grid": dict,
    "points": [{"r": [_NUM], "c": _NUM, "topology": str}],
    "topologies": MapOf({"file": str, "sha256": str, "parents": [[int]], "params": int, "macs": int,
                         "bn_slots": Optional_([str]), "gflops_paper": Optional_(_NUM)}),
    "controller": MapOf(_FILE),
    "bn_layout": [{"name": str, "channels": int, "offset": int}],
    "bn_eps": _NUM,
    "topology_salt": str,
    "num_layers": Optional_(int),
    "bn_delta_size": Optional_(int),
    "weights": Optional_({"file": str, "sha256": str}),
    "engines": Optional_(MapOf(MapOf({"files": Optional_(MapOf(_FILE))}))),
    "latency": Optional_(MapOf(MapOf({"p50_ms": _NUM}))),
    "int8": Optional_(dict),
    # AdaShare / DAG bundles: one static architecture (dymu_rt.compile.build, StaticLowering).
    "static": Optional_({"method": str, "graph": dict}),
}

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
               dict: "an object", list: "a list"}


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return "a number" if set(t) == {int, float} else " or ".join(_type_name(x) for x in t)
    return _TYPE_NAMES.get(t, getattr(t, "__name__", str(t)))


def _check(value: Any, spec: Any, where: str) -> None:
    """Raise BundleError naming ``where`` unless ``value`` follows ``spec``."""
    if isinstance(spec, Optional_):
        spec = spec.spec
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise BundleError(f"manifest key {where!r} must be an object, got {type(value).__name__}")
        for key, sub in spec.items():
            if key not in value:
                if isinstance(sub, Optional_):
                    continue
                raise BundleError(f"manifest key {where + '.' + key if where else key!r} is missing")
            _check(value[key], sub, f"{where}.{key}" if where else key)
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise BundleError(f"manifest key {where!r} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
        return
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise BundleError(f"manifest key {where!r} must be an object, got {type(value).__name__}")
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}")
        return
    types = spec if isinstance(spec, tuple) else (spec,)
    # bool is an int to Python; to a manifest it never is (schema_version: true is refused).
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise BundleError(f"manifest key {where!r} = {_short(value)} must be {_type_name(spec)}")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _depth_ok(text: str) -> bool:
    """True when no JSON container nests deeper than MAX_DEPTH (checked on the text, so a
    hostile document cannot exhaust the parser's recursion)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


# -- typed view --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskEntry:
    """One task of the bundle: its output name, kind (``dymu_rt.tasks`` kind) and channels."""

    name: str
    kind: str
    out_channels: int


@dataclass(frozen=True)
class Point:
    """One grid point (r, c) and the topology the edge hypernet gives it."""

    r: tuple[float, ...]
    c: float
    topology: str


@dataclass(frozen=True)
class TopologyEntry:
    """One distinct tree: its graph file, parent table and cost (MACs and parameters)."""

    id: str
    file: str
    sha256: str
    parents: tuple[tuple[int, ...], ...]
    params: int
    macs: int
    bn_slots: tuple[str, ...] = ()
    # The paper's "GFLOPs": fvcore's count (MACs + BN, upsampling, pooling) / 1e9, as the
    # build computed it (dymu_rt.models.cost); None in bundles built before it existed.
    gflops_paper: Optional[float] = None

    @property
    def gmacs(self) -> float:
        """Conv + linear multiply-accumulates / 1e9 (the paper's "GFLOPs" are fvcore's larger count: gflops_paper)."""
        return units.gmacs(self.macs)

    @property
    def gflops(self) -> float:
        """Floating-point operations / 1e9, counting 2 FLOPs per MAC."""
        return units.gflops(self.macs)


@dataclass(frozen=True)
class FileRef:
    """A bundle-relative file and its sha256."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A validated bundle manifest (see the module docstring). Build with :meth:`from_dict`."""

    schema_version: int
    preset: str
    tasks: tuple[TaskEntry, ...]
    preprocessing: Mapping[str, Any]
    grid: Mapping[str, Any]
    points: tuple[Point, ...]
    topologies: Mapping[str, TopologyEntry]
    controller: Mapping[str, FileRef]
    bn_layout: tuple[Mapping[str, Any], ...]
    bn_eps: float
    bn_delta_size: int
    num_layers: int
    topology_salt: str
    weights: Optional[Mapping[str, Any]]
    engines: Mapping[str, Mapping[str, Mapping[str, Any]]]
    latency: Mapping[str, Mapping[str, Mapping[str, Any]]]
    int8: Optional[Mapping[str, Any]]
    #: {method, graph, shared_modules, preference} of a static (AdaShare / DAG) bundle, else None
    static: Optional[Mapping[str, Any]] = None
    data: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, doc: Any, where: str = MANIFEST, _owned: bool = False) -> "Manifest":
        """Validate ``doc`` (the parsed JSON) and return the typed manifest. The manifest keeps
        its own copy of ``doc`` (``_owned``: the caller hands over a document nobody else holds,
        e.g. one just parsed, and it is kept as is)."""
        validate_manifest(doc, where)
        if not _owned:
            doc = copy.deepcopy(doc)
        topologies = {
            tid: TopologyEntry(tid, t["file"], t["sha256"], tuple(tuple(row) for row in t["parents"]),
                               t["params"], t["macs"], tuple(t.get("bn_slots", ())), t.get("gflops_paper"))
            for tid, t in doc["topologies"].items()}
        if not topologies:
            raise BundleError(f"{where}: the bundle has no topologies")
        num_layers = doc.get("num_layers", len(next(iter(topologies.values())).parents))
        delta_size = doc.get("bn_delta_size", max(
            (s["offset"] + 2 * s["channels"] for s in doc["bn_layout"]), default=0))
        return cls(
            schema_version=doc["schema_version"], preset=doc["preset"],
            tasks=tuple(TaskEntry(t["name"], t["kind"], t["out_channels"]) for t in doc["tasks"]),
            preprocessing=doc["preprocessing"], grid=doc["grid"],
            points=tuple(Point(tuple(float(v) for v in p["r"]), float(p["c"]), p["topology"])
                         for p in doc["points"]),
            topologies=topologies,
            controller={k: FileRef(v["file"], v["sha256"]) for k, v in doc["controller"].items()
                        if isinstance(v, dict) and "file" in v},
            bn_layout=tuple(doc["bn_layout"]), bn_eps=float(doc["bn_eps"]),
            bn_delta_size=int(delta_size), num_layers=int(num_layers), topology_salt=doc["topology_salt"],
            weights=doc.get("weights"), engines=doc.get("engines", {}),
            latency=doc.get("latency", {}), int8=doc.get("int8"), static=doc.get("static"), data=doc)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (a fresh copy: editing it never changes this manifest)."""
        return copy.deepcopy(dict(self.data))

    # -- derived -----------------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def build_info(self) -> Mapping[str, Any]:
        """The ``build`` record (fingerprint, backend, profile, run_dir), {} when absent."""
        info = self.data.get("build")
        return info if isinstance(info, dict) else {}

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.preprocessing["input_size"]
        return int(h), int(w)

    def files(self) -> dict[str, str]:
        """Every file the manifest names (bundle-relative path -> sha256)."""
        files = {t.file: t.sha256 for t in self.topologies.values()}
        if self.weights is not None and "file" in self.weights:
            files[self.weights["file"]] = self.weights["sha256"]
        for ref in self.controller.values():
            files[ref.file] = ref.sha256
        for backend in self.engines.values():
            for prof in backend.values():
                for entry in prof.get("files", {}).values():
                    files[entry["file"]] = entry["sha256"]
        return files

    def first_points(self) -> dict[str, Point]:
        """Topology id -> its first grid point (the point a topology is profiled at)."""
        first: dict[str, Point] = {}
        for p in self.points:
            first.setdefault(p.topology, p)
        return first


def validate_manifest(doc: Any, where: str = MANIFEST) -> None:
    """Every check a manifest passes before it is trusted (raises one BundleError line).

    The single place manifest-wide checks live: kind, schema version, :data:`SCHEMA`,
    points -> known topologies.
    """
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BundleError(f"{where} is not a dymu-rt bundle manifest (kind != {KIND!r})")
    version = doc.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMAS:
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise BundleError(f"{where} has schema_version {version}, newer than this dymu-rt understands "
                              f"({SCHEMA_VERSION}); upgrade dymu-rt or rebuild the bundle")
        if isinstance(version, int) and not isinstance(version, bool) and version in (1, 2):
            # Schema 1/2 bundles store the anchor's conv weights twice (fold_params and the
            # graphs) and their INT8 graphs in full; schema 3 stores every tensor once.
            raise BundleError(f"{where} has schema_version {version} (a bundle from before store-once weights); "
                              f"this dymu-rt reads schema {SCHEMA_VERSION}: rebuild it with "
                              "`dymu-rt build RUN_DIR --out BUNDLE` (and re-run `dymu-rt calibrate` for INT8)")
        raise BundleError(f"{where} has schema_version {_short(version)}; this dymu-rt reads "
                          f"{', '.join(map(str, READABLE_SCHEMAS))} (rebuild the bundle with this version)")
    missing = [k for k, spec in SCHEMA.items() if k not in doc and not isinstance(spec, Optional_)]
    # ``weights`` may be absent only in a bundle whose graphs hold their own weights (made by
    # hand, e.g. test fixtures); `dymu-rt build` always writes it. The raw conv weights of
    # such a bundle must then be in fold_params (bundle/weight_pool.py says so if not).
    if missing:
        raise BundleError(f"{where} lacks keys {missing}")
    try:
        _check(doc, SCHEMA, "")
    except BundleError as e:
        raise BundleError(f"{where}: {e}") from None
    for i, p in enumerate(doc["points"]):
        if p["topology"] not in doc["topologies"]:
            raise BundleError(f"{where}: point {i} maps to unknown topology {p['topology']!r}")
    # Ranges, names, paths confined to the bundle, sizes and cross-section agreement
    # (dymu_rt.bundle.schema); the structural types above are checked first.
    try:
        check_schema(doc)
    except BundleError as e:
        raise BundleError(f"{where}: {e}") from None


def parse_manifest(text: str, where: str = MANIFEST) -> Manifest:
    """Parse and validate manifest JSON text."""
    if not _depth_ok(text):
        raise BundleError(f"{where} nests deeper than {MAX_DEPTH} levels; not a dymu-rt manifest")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"{where} is not valid JSON ({e})") from None
    return Manifest.from_dict(doc, where, _owned=True)


#: Largest manifest read (the paper-scale grids' manifests are a few MB).
MAX_MANIFEST_BYTES = 64 * 2**20


def _manifest_text(path: str | Path) -> tuple[Path, str]:
    """(manifest path, its text): a regular file inside the bundle, reached through no link,
    at most MAX_MANIFEST_BYTES."""
    root = bundle_root(path)
    mpath = root / MANIFEST
    if not os.path.lexists(mpath):
        raise BundleError(f"{path} is not a dymu-rt bundle (no {MANIFEST}); build one with `dymu-rt build`")
    inside(root, MANIFEST, "manifest")
    size = mpath.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath} is {size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}")
    try:
        return mpath, mpath.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{mpath} is not valid JSON ({e})") from None


def read_manifest(path: str | Path) -> Manifest:
    """The validated manifest of bundle folder ``path``: schema (:func:`validate_manifest`)
    and the checksum kept beside it (:mod:`dymu_rt.bundle.checksum`); not the files'
    hashes (see :func:`dymu_rt.bundle.layout.verify_bundle`)."""
    mpath, text = _manifest_text(path)
    m = parse_manifest(text, str(mpath))
    try:
        verify_checksum(path, m.data)
    except BundleError:
        # A writer (update_manifest, which holds the lock file) may have replaced manifest and
        # checksum between our two reads: look again while no writer can run.
        if not os.path.lexists(Path(path) / LOCK_FILE):
            raise
        with bundle_lock(path):
            mpath, text = _manifest_text(path)
            m = parse_manifest(text, str(mpath))
            verify_checksum(path, m.data)
    return m


def write_manifest(root: str | Path, manifest: Manifest | Mapping[str, Any]) -> Manifest:
    """Validate and write ``root/manifest.json`` and its checksum atomically (crash-safe
    order: :func:`dymu_rt.bundle.checksum.write_with_checksum`); returns the typed manifest."""
    m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    write_with_checksum(root, m.to_dict())
    return m
