"""Writing a bundle folder: what a grid bundle and a static bundle share.

Both kinds (:func:`dymu_rt.compile.build.write_bundle` of a DYMU run's preference grid or of
one static architecture: AdaShare, DAG, the compare baselines) write into
``--out`` under the same discipline, which lives here once:

* :func:`prepare_out` refuses a folder that is not provably ours (a valid manifest or a
  build journal), recognises a finished build of the same request (a no-op) and keeps the
  intact files of a damaged one;
* the journal (:func:`load_journal`, :func:`file_done`) records every finished file with
  its sha256, so a killed build re-run skips them; only files this tool wrote (the
  journal's ``owned``) are ever removed (:func:`remove_owned`, :func:`remove_temporaries`,
  :func:`remove_stale`);
* :func:`compile_engines` compiles one engine per topology for backends that build ahead
  (TensorRT), journaled the same way;
* :func:`manifest_head` is the part of the manifest every bundle carries, and
  :func:`build_summary` what a build returns.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from dymu_rt import __version__
from dymu_rt.backends.base import EngineRequest
from dymu_rt.backends.devices import load_profile
from dymu_rt.backends.registry import backend_class, get_backend
from dymu_rt.bundle import layout as B
from dymu_rt.bundle.manifest import Manifest
from dymu_rt.bundle.paths import TOPOLOGY_ID_RE, check_relpath
from dymu_rt.bundle.sections import engines_dir
from dymu_rt.core.errors import BundleError, ValidationError
from dymu_rt.core.io import atomic_write_json, sha256_file


def describe_training_data(data) -> str:
    """A plain statement of what a run was trained on, stored in the manifest."""
    if data == "synth":
        return ("procedural room scenes rendered by dymu_rt.data.synth (NYU-v2 class ids and "
                "layout, but synthetic images; NOT trained on NYU-v2 or any real dataset)")
    return f"the dataset at {data}"


def check_backend(backend: str, profile: Optional[str]):
    """Validate the backend (and profile) up front; the backend must be usable on this machine.

    Returns the loaded DeviceProfile or None.
    """
    cls = backend_class(backend)
    cls.check_available()
    if cls.needs_profile and profile is None:
        raise ValidationError(f"--backend {backend} needs --profile NAME (a {backend} device profile; see "
                              "`dymu-rt profiles`)")
    if profile is None:
        return None
    prof = load_profile(profile)
    if prof.backend != backend:
        raise ValidationError(f"profile '{prof.name}' is for backend '{prof.backend}', not '{backend}'")
    return prof


def manifest_head(preset, cfg: dict) -> dict:
    """The manifest fields every bundle of a run carries, DYMU grid or static architecture:
    schema, producer, preset, training data, tasks and preprocessing."""
    return {
        "schema_version": B.SCHEMA_VERSION, "kind": B.KIND, "producer": _producer(),
        "preset": preset.name, "preset_config": preset.to_dict(), "trained_on": cfg.get("data"),
        "training_data": describe_training_data(cfg.get("data")),
        "tasks": [{"name": t.name, "kind": t.kind, "out_channels": t.out_channels} for t in preset.tasks],
        "preprocessing": {"input_size": list(preset.input_size), "color": "RGB", "scale": 1 / 255,
                          "mean": list(preset.mean), "std": list(preset.std), "normalize_in_graph": True},
    }


def _producer() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"dymu_rt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def _read_journal(out: Path) -> Optional[dict[str, Any]]:
    """The build journal in ``out``, or None; a journal that is not one of ours is refused
    (it would be the only proof that the folder's files are ours to replace)."""
    path = out / B.JOURNAL
    if not os.path.lexists(path):
        return None
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError
        j = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(j, dict) and isinstance(j.get("fingerprint"), str) and isinstance(j.get("files"), dict)
                and isinstance(j.get("owned", []), list)):
            raise ValueError
        for rel in [*j["files"], *j.get("owned", [])]:
            check_relpath(rel, "build journal entry")
    except (ValueError, UnicodeDecodeError, RecursionError, BundleError):
        raise ValidationError(f"--out {out} holds a {B.JOURNAL} that is not a dymu-rt build journal; refusing to "
                              f"build into it (nothing was changed): choose another directory") from None
    return j


def load_journal(out: Path, fingerprint: str, owned: set[str]) -> dict[str, Any]:
    """The journal of an interrupted build of the same request, or a fresh one. ``owned``:
    the files this tool wrote in ``out`` before (the only ones a build may ever delete)."""
    j = _read_journal(out)
    if j is None or j.get("fingerprint") != fingerprint:
        if j is not None:
            owned = owned | set(j["files"]) | set(j.get("owned", []))
        j = {"fingerprint": fingerprint, "files": {}}
    j["owned"] = sorted(owned | set(j.get("owned", [])) | set(j["files"]))
    return j


def file_done(out: Path, journal: dict, rel: str) -> bool:
    digest = journal["files"].get(rel)
    return digest is not None and (out / rel).is_file() and sha256_file(out / rel) == digest


def _describe_entries(out: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in out.iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def prepare_out(out: Path, fingerprint: str) -> tuple[Optional[Manifest], set[str]]:
    """(the manifest if ``out`` already holds this exact build, else None; the files this
    tool wrote in ``out`` before). Refuses any non-empty ``out`` that is not provably a
    dymu-rt bundle (a manifest that passes the schema and its checksum) or an interrupted
    build of one (a valid journal), naming it; nothing in it is touched then."""
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return None, set()
    journal = _read_journal(out)
    owned = set() if journal is None else set(journal["files"]) | set(journal.get("owned", []))
    if os.path.lexists(out / B.MANIFEST):
        try:
            manifest = B.read_manifest(out)
        except BundleError as e:
            raise ValidationError(f"--out {out} holds a {B.MANIFEST} that is not a valid dymu-rt bundle manifest "
                                  f"({e}); refusing to build into it (nothing was changed): choose another "
                                  f"directory") from None
        owned |= set(manifest.files())
        if manifest.build_info.get("fingerprint") == fingerprint:
            try:
                return B.verify_bundle(out), owned
            except BundleError:
                # Same build, some file damaged or missing: keep the intact files (their
                # hashes are re-checked before reuse) and rebuild the rest.
                journal = {"fingerprint": fingerprint, "files": manifest.files(), "owned": sorted(owned)}
                if manifest.weights is not None and "tensors" in manifest.weights:
                    journal["weights"] = _store_json(dict(manifest.weights))
                atomic_write_json(out / B.JOURNAL, journal)
        if journal is None and manifest.build_info.get("fingerprint") != fingerprint:
            # A whole, usable bundle: build the new one beside it (stage_out), so it stays
            # usable until the new one is whole.
            return None, owned | {_KEEP_MARK}
        # Drop the manifest first, so that no manifest ever points at files this build is
        # about to replace.
        (out / B.MANIFEST).unlink()
    elif journal is None:
        raise ValidationError(f"--out {out} is not empty ({_describe_entries(out)}) and is not a dymu-rt bundle; "
                              f"refusing to build into it (nothing was changed): choose a new or empty directory")
    return None, owned


_KEEP_MARK = "\0keep"
_STAGE = re.compile(r"\.(?P<name>.+)\.build-(?P<pid>[0-9]+)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_out(out: Path, owned: set[str]) -> tuple[Path, set[str]]:
    """(the folder to build into, the owned files). When ``prepare_out`` found a whole bundle
    in ``out`` (it marks ``owned``), the build goes to a copy beside it,
    ``.<name>.build-<pid>`` (the old bundle stays usable until :func:`commit_out` swaps
    them); otherwise into ``out`` itself. Staging folders of builds whose process is gone
    are removed first."""
    real = Path(os.path.realpath(out))
    for p in real.parent.iterdir() if real.parent.is_dir() else ():
        m = _STAGE.fullmatch(p.name)
        if m and m.group("name") == real.name and not _pid_alive(int(m.group("pid"))) \
                and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
    if _KEEP_MARK not in owned:
        return out, owned
    owned = owned - {_KEEP_MARK}
    stage = real.parent / f".{real.name}.build-{os.getpid()}"
    if os.path.lexists(stage):
        shutil.rmtree(stage)
    shutil.copytree(real, stage, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    for name in (B.MANIFEST, "manifest.sha256.json"):
        (stage / name).unlink(missing_ok=True)
    return stage, owned


def commit_out(work: Path, out: Path) -> None:
    """Swap a finished staged build into ``out`` (atomically where the OS can exchange two
    folders; else two renames a moment apart, the old bundle kept until the second) and
    remove the old bundle. Nothing to do when the build went into ``out`` itself."""
    real = Path(os.path.realpath(out))
    if Path(os.path.realpath(work)) == real:
        return
    if not _exchange(work, real):
        old = real.parent / f".{real.name}.old-{os.getpid()}"
        os.rename(real, old)
        os.rename(work, real)
        work = old
    shutil.rmtree(work, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths atomically (Linux); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), exchange) == 0


def _store_json(weights: dict) -> dict:
    """The journal's form of a manifest ``weights`` section (a TensorStore's JSON)."""
    return {"location": Path(weights["file"]).name, "sha256": weights["sha256"], "bytes": weights["bytes"],
            "tensors": weights["tensors"]}


def compile_engines(out: Path, journal: dict, topologies: list[str], prof, bar) -> tuple[dict, int]:
    """Compile every topology's graph with the profile's backend into
    ``engines/<backend>/<profile>/``, journaled (an engine whose file, sidecar and source graph
    are unchanged is reused); returns (the manifest ``engines`` section, engines built)."""
    be = get_backend(prof.backend)
    rel_dir = engines_dir(be.name, prof.name)
    (out / rel_dir).mkdir(parents=True, exist_ok=True)
    sources = journal.setdefault("engine_graphs", {})
    done = {}
    for rel in journal["files"]:
        if rel.startswith(f"{rel_dir}/"):
            done[Path(rel).name.split(".")[0]] = rel
    files, built = {}, 0
    task = bar.add_task("engines", total=len(topologies), info=f"{be.name} {prof.name}")
    for tid in topologies:
        graph_rel = B.graph_file(tid)
        graph_sha = journal["files"][graph_rel]
        rel = done.get(tid)
        reuse = (rel is not None and file_done(out, journal, rel) and (out / f"{rel}.json").is_file()
                 and sources.get(rel, graph_sha) == graph_sha)
        if not reuse:
            rec = be.compile(EngineRequest(out / graph_rel, prof, tid, bundle=out), out / rel_dir)
            rel = f"{rel_dir}/{rec['file']}"
            journal["files"][rel] = rec["sha256"]
            sources[rel] = graph_sha
            atomic_write_json(out / B.JOURNAL, journal)
            built += 1
        files[tid] = {"file": rel, "sha256": journal["files"][rel]}
        bar.update(task, advance=1, info=tid)
    section = {**be.device_facts(), "profile": prof.name, "precision": prof.precision, "files": files}
    return {be.name: {prof.name: section}}, built


def _is_timing_cache(path: Path) -> bool:
    return path.name.startswith("timing_") and path.suffix == ".cache"


def _engine_companions(out: Path, rel: str) -> list[Path]:
    """An engine file's companions the backend wrote beside it (sidecar, precision-converted
    graph): ``<topology>.*`` in the engine's folder, links excluded."""
    p = out / rel
    tid = p.name.split(".")[0]
    if not p.parent.is_dir() or p.parent.is_symlink():
        return []
    return [f for f in p.parent.iterdir() if f.name.startswith(f"{tid}.") and f.is_file() and not f.is_symlink()]


def remove_owned(out: Path, journal: dict, keep: set[str]) -> None:
    """Remove the graph and engine files this tool wrote in ``out`` (the journal's
    ``owned`` and ``files``) that ``keep`` does not name, with their companions, and the
    engine folders left empty; the per-device timing caches always stay. A file a user put
    in the bundle is never in ``owned`` and is never touched."""
    keep_prefixes = tuple(str(Path(rel).parent / Path(rel).name.split(".")[0]) + "." for rel in keep
                          if rel.startswith("engines/"))
    for rel in sorted(set(journal.get("owned", [])) | set(journal["files"])):
        if rel in keep or not rel.startswith((f"{B.GRAPHS_DIR}/", "engines/")):
            continue
        victims = [out / rel] + (_engine_companions(out, rel) if rel.startswith("engines/") else [])
        for f in victims:
            frel = f.relative_to(out).as_posix()
            if frel in keep or frel.startswith(keep_prefixes) or _is_timing_cache(f):
                continue
            if f.is_file() and not f.is_symlink():
                f.unlink()
    root = out / "engines"
    if root.is_dir() and not root.is_symlink():
        for d in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()


#: Where a killed atomic writer of this tool can leave ``.<name>.<random>.tmp`` files, and
#: the names it writes there; nothing else that ends in .tmp is ours to remove.
_TMP = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")


def remove_temporaries(out: Path) -> None:
    """Remove temporaries a killed atomic writer of this tool left: ``.<name>.<random>.tmp`` where
    <name> is a file this tool writes there (manifest, journal, checksum, graphs, weights,
    controller files; anything in the engines folders, which only backends write)."""
    own = {B.MANIFEST, B.JOURNAL, "manifest.sha256.json"}
    folders = [(out, own), (out / B.GRAPHS_DIR, None), (out / B.CONTROLLER_DIR,
               {Path(f).name for f in (B.EDGE_HYPERNET_FILE, B.WEIGHT_HYPERNET_FILE, B.FOLD_PARAMS_FILE)})]
    engines = out / "engines"
    if engines.is_dir() and not engines.is_symlink():
        # engines/<backend>/<profile>/ hold only what backends write (engines, sidecars, timing
        # caches): any temporary there is a killed writer's.
        folders += [(d, "any") for d in engines.rglob("*") if d.is_dir() and not d.is_symlink()]
    for folder, names in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for f in folder.iterdir():
            m = _TMP.fullmatch(f.name)
            if not m or not f.is_file() or f.is_symlink():
                continue
            name = m.group("name")
            ours = True if names == "any" else name in names if names is not None else (
                name == Path(B.WEIGHTS_FILE).name or TOPOLOGY_ID_RE.fullmatch(name.split(".")[0]) is not None)
            if ours:
                f.unlink()


def remove_stale(out: Path, manifest: Manifest, journal: dict) -> None:
    """Drop the graph and engine files this tool wrote that the new manifest does not name
    (an engine's companions — its sidecar, its precision-converted graph — and the timing
    caches stay), then the journal (the build is complete)."""
    remove_owned(out, journal, keep=set(manifest.files()))
    (out / B.JOURNAL).unlink(missing_ok=True)


def build_summary(out: Path, manifest: Manifest, built: int, seconds: float, noop: bool) -> dict[str, Any]:
    g = [t.gmacs for t in manifest.topologies.values()]
    return {"out": str(out), "points": len(manifest.points), "topologies": len(manifest.topologies),
            "built": built, "reused": len(manifest.topologies) - built,
            "bundle_bytes": B.bundle_bytes(out), "seconds": seconds,
            "weights_bytes": (manifest.weights or {}).get("bytes", 0),
            "gmacs_min": min(g) if g else 0.0, "gmacs_max": max(g) if g else 0.0, "noop": noop}
