"""A corpus of hostile and broken inputs: bundles, images, run configs, arguments.

A plain module (no pytest) so that the tests (tests/security/) and the probe
(``benchmarks/probe_hostile.py``) build the same cases. Every builder writes under a
folder it is given and returns :class:`Case` objects: a name, a category, the ``dymu-rt``
arguments that exercise it, and the files outside the bundle that must never be opened.

Hostile bundles start from a good bundle (the shipped default, or one the caller built)
and change one thing, the way an attacker would: where a change would only break a file's
sha256, the attacker recomputes it (``_reseal``), so a case tests containment and schema
checks, not the checksums alone. "edited" cases do not reseal the manifest checksum: they
are the careless (or naive) edits that checksum exists to catch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

IMAGE_CASE_R = "0.4,0.3,0.3"


@dataclass
class Case:
    """One probe: ``argv`` for ``dymu-rt``; ``expect`` "error" (must be refused in one line)
    or "ok" (must succeed); ``watch`` files outside the bundle that must not be opened;
    ``bundle`` the bundle under test (writes are allowed only there and in ``out``)."""

    name: str
    category: str
    argv: list[str]
    expect: str = "error"
    watch: list[str] = field(default_factory=list)
    bundle: Optional[str] = None
    out: Optional[str] = None
    check_intact: Optional[dict] = None      # path -> sha256 of files that must survive
    memory_limit: bool = False               # run under RLIMIT_AS (image bombs)
    absent: list[str] = field(default_factory=list)     # must not exist afterwards (laundered/half-made)
    links: list[str] = field(default_factory=list)      # user links that must still be links afterwards
    stderr_ok: tuple[str, ...] = ()                      # stderr line prefixes that are not errors (warnings)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file under ``folder`` (symlinks not followed)."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(folder))] = sha256(p)
    return out


# -- images ---------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, mode_gray: bool = True, rows: Optional[bytes] = None,
              level: int = 9) -> bytes:
    """A valid 8-bit greyscale PNG of ``width`` x ``height`` zeros (tiny when the rows are
    all zero: a 5000 x 1 image is under 100 bytes)."""
    raw = rows if rows is not None else b"".join(b"\x00" + bytes(width) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0 if mode_gray else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, level))
            + _png_chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no data (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _png_chunk(b"IEND", b""))


def image_bombs(folder: Path) -> dict[str, Path]:
    """Image files that cost far more memory decoded (or drawn) than they take on disk."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "tall_5000x1": png_bytes(1, 5000),
        "tall_50000x1": png_bytes(1, 50000),
        "wide_1x50000": png_bytes(50000, 1),
        "wide_1x1000000": png_bytes(1_000_000, 1),
        "bomb_header_100000sq": png_header_only(100_000, 100_000),
        "bomb_header_9000sq": png_header_only(9000, 9000),
    }
    out = {}
    for name, data in made.items():
        p = folder / f"{name}.png"
        p.write_bytes(data)
        out[name] = p
    # A real decompression bomb within PIL's own limit but far over ours: 12000^2 zeros.
    p = folder / "bomb_12000sq.png"
    row = b"\x00" + bytes(12000)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(12000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body)
                  + _png_chunk(b"IEND", b""))
    out["bomb_12000sq"] = p
    good = png_bytes(64, 64)
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    out["truncated"] = folder / "truncated.png"
    flipped = bytearray(png_bytes(64, 64, rows=bytes(range(256)) * 16 + b"\x00" * (65 * 64 - 4096)))
    flipped[40] ^= 0x10
    (folder / "bitflip.png").write_bytes(bytes(flipped))
    out["bitflip"] = folder / "bitflip.png"
    (folder / "not_an_image.png").write_text("hello\n")
    out["not_an_image"] = folder / "not_an_image.png"
    return out


# -- bundles --------------------------------------------------------------------------------

def _read(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _write(root: Path, m) -> None:
    (root / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


def _reseal(root: Path, m: dict) -> dict:
    """Recompute every sha256 the manifest records (what an attacker would do)."""
    for t in m.get("topologies", {}).values():
        f = root / t["file"]
        if f.is_file():
            t["sha256"] = sha256(f)
    w = m.get("weights")
    if isinstance(w, dict) and (root / w["file"]).is_file():
        w["sha256"] = sha256(root / w["file"])
        w["bytes"] = (root / w["file"]).stat().st_size
    for c in m.get("controller", {}).values():
        if isinstance(c, dict) and (root / c["file"]).is_file():
            c["sha256"] = sha256(root / c["file"])
    return m


def _reseal_checksum(root: Path) -> None:
    """Rewrite the manifest-checksum file beside the manifest if the bundle has one (an
    attacker's last step); "edited" cases skip this."""
    try:
        from dymu_rt.bundle.checksum import write_checksum
    except ImportError:
        return
    write_checksum(root)


def _first_topology(m: dict) -> str:
    return sorted(m["topologies"])[0]


def _rename_topology(m: dict, old: str, new: str) -> None:
    m["topologies"][new] = m["topologies"].pop(old)
    for p in m["points"]:
        if p["topology"] == old:
            p["topology"] = new


def _outside_copy(outside: Path, src: Path, name: str) -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    dst = outside / name
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)
    return dst


def _graph_with_external(root: Path, tid: str, location: str) -> None:
    """Point every external tensor of ``tid``'s graph at ``location`` (structure only)."""
    import onnx

    path = root / "graphs" / f"{tid}.onnx"
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for e in init.external_data:
            if e.key == "location":
                e.value = location
    path.write_bytes(model.SerializeToString())


Mutation = Callable[[Path, dict, Path], Optional[dict]]


def _mutations() -> dict[str, tuple[str, Mutation, bool]]:
    """name -> (category, mutate(root, manifest, outside) -> manifest or None, reseal)."""

    def topo_id(value):
        def f(root, m, out):
            _rename_topology(m, _first_topology(m), value)
            return m
        return f

    def topo_file(value_fn):
        def f(root, m, out):
            t = m["topologies"][_first_topology(m)]
            t["file"] = value_fn(root, m, out, t)
            return m
        return f

    def outside_graph(root, m, out, t):
        return os.path.relpath(_outside_copy(out, root / t["file"], "secret.onnx"), root)

    def abs_graph(root, m, out, t):
        return str(_outside_copy(out, root / t["file"], "secret.onnx"))

    def symlink(rel, what="file"):
        def f(root, m, out):
            target = root / rel
            copy = _outside_copy(out, target, "linked_" + target.name)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
            target.symlink_to(copy)
            return m
        return f

    def symlink_dir(rel):
        def f(root, m, out):
            target = out / ("linked_" + rel)
            target.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(root / rel, ignore_errors=True)
            (root / rel).symlink_to(target)
            return None
        return f

    def symlink_manifest(root, m, out):
        copy = _outside_copy(out, root / "manifest.json", "manifest.json")
        (root / "manifest.json").unlink()
        (root / "manifest.json").symlink_to(copy)
        return None

    def external(location_fn):
        def f(root, m, out):
            tid = _first_topology(m)
            _graph_with_external(root, tid, location_fn(root, out))
            return m
        return f

    def outside_weights(root, out):
        copy = _outside_copy(out, root / "graphs" / "weights.bin", "weights.bin")
        return os.path.relpath(copy, root / "graphs")

    def setter(path, value):
        def f(root, m, out):
            node = m
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value(m) if callable(value) else value
            return m
        return f

    def controller_file(value_fn):
        def f(root, m, out):
            c = m["controller"]["edge_hypernet"]
            c["file"] = value_fn(root, out, c)
            return m
        return f

    def engines_file(root, m, out):
        tid = _first_topology(m)
        m["engines"] = {"onnxruntime": {"x86-64-cpu": {"files": {tid: {"file": "../../outside/engine.onnx",
                                                                        "sha256": "0" * 64}}}}}
        return m

    def deep(root, m, out):
        (root / "manifest.json").write_text('{"schema_version": 2, "kind": "dymu-rt-bundle", "tasks": '
                                            + "[" * 200_000 + "]" * 200_000 + "}")
        return None

    def edit(path, fn):
        def f(root, m, out):
            node = m
            for k in path[:-1]:
                node = node[k] if not isinstance(node, list) else node[int(k)]
            key = path[-1]
            node[key] = fn(node[key])
            return m
        return f

    def damage(rel_fn, how):
        def f(root, m, out):
            p = root / rel_fn(m)
            data = bytearray(p.read_bytes())
            if how == "truncate":
                data = data[: len(data) // 2]
            else:
                data[len(data) // 2] ^= 0x01
            p.write_bytes(bytes(data))
            return None
        return f

    def graph0(m):
        return m["topologies"][_first_topology(m)]["file"]

    M: dict[str, tuple[str, Mutation, bool]] = {
        # traversal / containment (attacker reseals checksums)
        "topology_id_traversal": ("traversal", topo_id("../../outside/x"), True),
        "topology_id_absolute": ("absolute", topo_id("/tmp/dymu-outside-x"), True),
        "topology_id_slash": ("traversal", topo_id("a/b"), True),
        "graph_file_traversal": ("traversal", topo_file(outside_graph), True),
        "graph_file_absolute": ("absolute", topo_file(abs_graph), True),
        "graph_file_etc_passwd": ("absolute", topo_file(lambda r, m, o, t: "/etc/passwd"), False),
        "controller_file_traversal": ("traversal", controller_file(
            lambda r, o, c: os.path.relpath(_outside_copy(o, r / c["file"], "edge.onnx"), r)), True),
        "weights_file_traversal": ("traversal", setter(("weights", "file"), "../outside/weights.bin"), False),
        "engines_file_traversal": ("traversal", engines_file, False),
        # symlinks
        "symlink_graph": ("symlink", lambda r, m, o: symlink(graph0(m))(r, m, o), True),
        "symlink_controller": ("symlink", symlink("controller/edge_hypernet.onnx"), True),
        "symlink_weights": ("symlink", symlink("graphs/weights.bin"), True),
        "symlink_graphs_dir": ("symlink", symlink("graphs"), True),
        "symlink_manifest": ("symlink", symlink_manifest, False),
        "symlink_engines_dir": ("symlink", symlink_dir("engines"), False),
        "symlink_calibration_dir": ("symlink", symlink_dir("calibration"), False),
        # ONNX external data that leaves the graphs folder
        "external_data_traversal": ("external-data", external(outside_weights), True),
        "external_data_absolute": ("external-data", external(
            lambda r, o: str(_outside_copy(o, r / "graphs" / "weights.bin", "weights.bin"))), True),
        "external_data_etc_passwd": ("external-data", external(lambda r, o: "/etc/passwd"), True),
        # wrong types
        "schema_version_bool": ("wrong-type", setter(("schema_version",), True), False),
        "schema_version_string": ("wrong-type", setter(("schema_version",), "2"), False),
        "tasks_string": ("wrong-type", setter(("tasks",), "semseg"), False),
        "topologies_list": ("wrong-type", setter(("topologies",), []), False),
        "points_table": ("wrong-type", setter(("points",), {}), False),
        "preprocessing_string": ("wrong-type", setter(("preprocessing",), "RGB"), False),
        "input_size_string": ("wrong-type", setter(("preprocessing", "input_size"), "64x64"), False),
        "bn_eps_string": ("wrong-type", setter(("bn_eps",), "1e-5"), False),
        "weights_tensors_number": ("wrong-type", setter(("weights", "tensors"), 5), False),
        "point_r_strings": ("wrong-type", setter(("points",), lambda m: [{**m["points"][0], "r": ["a", "b", "c"]}]),
                            False),
        "latency_list": ("wrong-type", setter(("latency",), [1, 2]), False),
        "manifest_list": ("wrong-type", lambda r, m, o: (r / "manifest.json").write_text("[]") and None, False),
        # deep nesting
        "deep_nesting_200000": ("deep-nesting", deep, False),
        # memory via the manifest
        "input_size_60000sq": ("memory", setter(("preprocessing", "input_size"), [60000, 60000]), False),
        # edited values (not resealed)
        "edited_bn_eps": ("edited", edit(("bn_eps",), lambda v: v * 1000), False),
        "edited_bn_offset": ("edited", edit(("bn_layout", "1", "offset"), lambda v: v + 1), False),
        "edited_scale": ("edited", edit(("preprocessing", "scale"), lambda v: v * 2), False),
        "edited_params": ("edited", lambda r, m, o: edit(("topologies", _first_topology(m), "params"),
                                                         lambda v: v // 2)(r, m, o), False),
        # truncated and bit-flipped files
        "truncated_manifest": ("truncated", damage(lambda m: "manifest.json", "truncate"), False),
        "truncated_graph": ("truncated", damage(graph0, "truncate"), False),
        "truncated_weights": ("truncated", damage(lambda m: "graphs/weights.bin", "truncate"), False),
        "truncated_fold_params": ("truncated", damage(lambda m: m["controller"]["fold_params"]["file"], "truncate"),
                                  False),
        "bitflip_manifest": ("bit-flip", damage(lambda m: "manifest.json", "flip"), False),
        "bitflip_graph": ("bit-flip", damage(graph0, "flip"), False),
        "bitflip_weights": ("bit-flip", damage(lambda m: "graphs/weights.bin", "flip"), False),
        "bitflip_edge_hypernet": ("bit-flip", damage(lambda m: m["controller"]["edge_hypernet"]["file"], "flip"),
                                  False),
    }
    return M


MUTATION_NAMES = tuple(_mutations())


def hostile_bundle(good: Path, dest: Path, outside: Path, name: str) -> tuple[str, Path]:
    """Copy bundle ``good`` to ``dest`` and apply mutation ``name``; files the mutation
    places outside the bundle go under ``outside``. Returns (category, dest)."""
    category, mutate, reseal = _mutations()[name]
    shutil.copytree(good, dest, symlinks=True)
    os.chmod(dest, 0o755)
    for dirpath, dirs, files in os.walk(dest):
        for f in files:
            os.chmod(Path(dirpath) / f, 0o644)
    m = mutate(dest, _read(dest), outside)
    if m is not None:
        if reseal:
            m = _reseal(dest, m)
        _write(dest, m)
        if reseal:
            _reseal_checksum(dest)
    return category, dest


def bundle_cases(good: Path, work: Path, image: Path, commands=("run", "inspect", "profile")) -> list[Case]:
    """One hostile bundle per mutation, each exercised by ``commands`` (each its own copy,
    since ``profile`` writes)."""
    work = Path(work)
    outside = work / "outside"
    cases = []
    for name in MUTATION_NAMES:
        for cmd in commands:
            dest = work / f"{name}.{cmd}"
            category, root = hostile_bundle(good, dest, outside, name)
            out = work / f"{name}.{cmd}.out"
            argv = {"run": ["run", str(image), "--r", IMAGE_CASE_R, "--c", "0.5", "--bundle", str(root),
                            "--out", str(out)],
                    "inspect": ["inspect", str(root), "--verify"],
                    "profile": ["profile", "--bundle", str(root), "--iters", "1", "--warmup", "0"],
                    "calibrate": ["calibrate", str(root), "--synth", "2"]}[cmd]
            cases.append(Case(f"bundle/{name}/{cmd}", category, argv, watch=[str(outside), "/etc/passwd"],
                              bundle=str(root), out=str(out)))
    return cases
