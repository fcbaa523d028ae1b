"""Concurrent writers in several processes never lose a manifest record (issue 16, item 8):
``update_manifest`` holds a real file lock (flock on BUNDLE/.lock) and re-reads under it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dymu_rt.bundle.checksum import verify_checksum

CHILD = """
import sys
from pathlib import Path
from dymu_rt.bundle.sections import update_manifest
root, who, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    def edit(m, i=i):
        m.setdefault("latency", {}).setdefault(f"proc-{who}", {})[f"{int(who):02x}{i:06x}".rjust(16, "0")] = {
            "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0}
    update_manifest(root, edit)
"""


def test_six_processes_lose_no_record(good_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(good_bundle, b)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    n_proc, n_each = 6, 8
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(b), str(k), str(n_each)], env=env,
                              stderr=subprocess.PIPE, text=True) for k in range(n_proc)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    m = json.loads((b / "manifest.json").read_text())
    got = sum(len(v) for k, v in m["latency"].items() if k.startswith("proc-"))
    assert got == n_proc * n_each
    assert verify_checksum(b, m)            # the checksum was kept in step with every write
