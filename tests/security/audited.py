"""Run ``dymu-rt ARGS`` in this process under an audit hook; report what it touched.

    python tests/security/audited.py REPORT.json --watch P [--watch P ...] --allow-write D
        [--allow-write D ...] [--limit-as BYTES] -- ARGS...

``sys.addaudithook`` sees every file Python opens (``open``, ``os.open``) and every
remove/rename/mkdir/rmtree/symlink. The report (JSON) lists opens of anything under a
``--watch`` prefix (files outside the bundle that must stay untouched) and any write
outside the ``--allow-write`` folders, plus the exit code and peak RSS. Reads done by C++
libraries (ONNX Runtime's external data) do not raise audit events: the probe also runs
this under ``strace`` where it exists, and the tests refuse such graphs before any library
sees them.
"""

from __future__ import annotations

import json
import os
import resource
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _real(p) -> str:
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return os.path.realpath(os.path.abspath(p))


def main() -> None:
    argv = sys.argv[1:]
    sep = argv.index("--")
    opts, args = argv[:sep], argv[sep + 1:]
    report_path = opts[0]
    watch, allow, limit = [], [], None
    i = 1
    while i < len(opts):
        if opts[i] == "--watch":
            watch.append(os.path.abspath(opts[i + 1]))
        elif opts[i] == "--allow-write":
            allow.append(_real(opts[i + 1]))
        elif opts[i] == "--limit-as":
            limit = int(opts[i + 1])
        i += 2
    allow += ["/dev", "/proc"]
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    touched, writes = [], []

    def under(path: str, roots) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def note(path, write: bool) -> None:
        if isinstance(path, int) or path is None:
            return
        try:
            raw = os.path.abspath(os.fsdecode(path))
            real = _real(path)
        except (TypeError, ValueError):
            return
        if under(raw, watch) or under(real, watch):
            touched.append(real)
        if write and not under(real, allow):
            writes.append(real)

    def hook(event: str, a) -> None:
        if event == "open":
            path, mode, flags = a
            write = bool(mode and any(ch in str(mode) for ch in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            note(path, write)
        elif event in ("os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod"):
            # relative to a directory descriptor (shutil.rmtree's walk): audited by the
            # shutil.rmtree event of its root, not resolvable against the cwd
            dir_fd = a[2] if event in ("os.mkdir", "os.chmod") and len(a) > 2 else a[1] if len(a) > 1 else None
            if event != "os.truncate" and isinstance(dir_fd, int) and not isinstance(dir_fd, bool):
                return
            note(a[0], True)
        elif event == "os.rename":
            note(a[0], True)
            note(a[1], True)
        elif event == "shutil.rmtree":
            note(a[0], True)
        elif event == "os.symlink":
            note(a[1], True)

    code = 0
    sys.addaudithook(hook)
    try:
        from dymu_rt.cli.main import main as cli_main

        cli_main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        code = 1
        raise
    finally:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with open(report_path, "w") as f:
            json.dump({"code": code, "touched": sorted(set(touched)), "writes_outside": sorted(set(writes)),
                       "peak_rss_bytes": rss}, f)
    sys.exit(code)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main()
