"""What ``dymu-rt inspect BUNDLE`` shows: a bundle's topologies with their cost, grid and sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dymu_rt.bundle.checksum import read_digests
from dymu_rt.bundle.latency_cache import cached_tables
from dymu_rt.bundle.layout import bundle_bytes, read_manifest, verify_bundle

#: how the cost columns are defined (shown with every cost table)
UNITS = ("gmacs = multiply-accumulates / 1e9 (conv and linear only); gflops = floating-point "
         "operations / 1e9 = 2 x MACs / 1e9; gflops_paper = the paper's 'GFLOPs' (fvcore: conv/linear "
         "MACs + BN 2/elem (1 non-affine) + bilinear upsampling 4/out elem + adaptive pooling) / 1e9")


def describe_bundle(path: str | Path, check_hashes: bool = False) -> dict[str, Any]:
    """Topologies of a bundle with params/GMACs/GFLOPs and point counts, most points first."""
    m = verify_bundle(path, check_hashes) if check_hashes else read_manifest(path)
    counts: dict[str, int] = {}
    for p in m.points:
        counts[p.topology] = counts.get(p.topology, 0) + 1
    tops = sorted(({"id": tid, "params": t.params, "macs": t.macs, "gmacs": t.gmacs, "gflops": t.gflops,
                    "gflops_paper": t.gflops_paper, "n_points": counts.get(tid, 0), "file": t.file} for tid, t in m.topologies.items()),
                  key=lambda t: (-t["n_points"], t["macs"], t["id"]))
    # Measured latency per profile: the manifest's own tables, then the per-user cache's
    # (read-only bundles such as the shipped one keep theirs there).
    cached = cached_tables(m)
    latency = {}
    for prof in sorted(set(m.latency) | set(cached)):
        own = prof in m.latency
        table = m.latency[prof] if own else cached[prof]["table"]
        rows = sorted(({"topology": tid, **{k: v for k, v in row.items() if k not in ("versions",)}}
                       for tid, row in table.items()), key=lambda r: r["p50_ms"])
        latency[prof] = {"source": str(Path(path) / "manifest.json") if own else str(cached[prof]["file"]),
                         "rows": rows}
    return {"what": "bundle", "path": str(path), "preset": m.preset, "trained_on": m.data.get("trained_on"),
            "training_data": m.data.get("training_data"),
            "tasks": m.task_names, "grid": dict(m.grid), "points": len(m.points),
            "n_topologies": len(tops), "topologies": tops, "bundle_bytes": bundle_bytes(path),
            "weights_bytes": (m.weights or {}).get("bytes"),
            "units": UNITS,
            "engines": {b: sorted(p) for b, p in m.engines.items()},
            "latency_profiles": sorted(set(m.latency) | set(cached)),
            "latency": latency,
            # read_manifest verified it when present; "absent": written before checksums existed.
            "manifest_checksum": "verified" if read_digests(path) is not None else "absent",
            # An AdaShare / DAG bundle: one fixed architecture (dymu_rt.compile.build, StaticLowering).
            "static": None if not m.static else {
                "method": m.static.get("method"), "preference": m.static.get("preference"),
                "shared_modules": list(m.static.get("shared_modules", [])),
                "nodes": len(m.static.get("graph", {}).get("nodes", []))}}
