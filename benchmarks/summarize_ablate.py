"""Mean and spread over seeds of ``ablate_dymu.py`` results (issue 22), per setting.

    python benchmarks/summarize_ablate.py benchmarks/results/issue22/ablate-synth-nyu-full-3seeds.json \\
        [more.json ...] [--json summary.json] [--markdown]

A run's setting is its ``setting`` field (``ablate_dymu.py`` runs) or, for ``--eval-runs``
reports, its folder name without the trailing ``-s<seed>``. Per setting: mean, standard
deviation (ddof 1; 0 with one seed), min and max of HV with adaptation at c = 0 / 1 and
without, single-task and PHN-BN HV, deployed Δ_T at uniform r (c = 0 / 1) and PHN-BN's,
c-ratio (all r and >= 2 active), span, monotone share, smallest tree / anchor.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

METRICS = ("hv_c0", "hv_c1", "hv_c0_raw", "hv_c1_raw", "hv_single", "hv_phn", "hv_c0_over_single",
           "dt_c0", "dt_c1", "dt_phn", "dt_c0_minus_phn", "c_ratio", "c_ratio_multi", "span", "monotone",
           "min_over_anchor", "distinct_trees")


def flatten(res: dict) -> dict:
    hv = {}
    for row in res["table"]:
        m, c = row["method"], row["c"]
        key = {"DYMU (ours)": "hv_c{}", "DYMU w/o adaptation": "hv_c{}_raw"}.get(m)
        if key is not None:
            hv[key.format(int(c))] = row["hv"]
        elif m == "PHN-BN":
            hv["hv_phn"] = row["hv"]
        elif m.startswith("single-task"):
            hv["hv_single"] = row["hv"]
    ctl, dt = res["controllability"], res["delta_t"]
    out = {**hv, "dt_c0": dt["dymu_by_c"]["0"], "dt_c1": dt["dymu_by_c"]["1"], "dt_phn": dt["phn_bn"],
           "c_ratio": ctl["c_ratio_gmacs"], "c_ratio_multi": ctl["c_ratio_multi_active"], "span": ctl["span"],
           "monotone": ctl["monotone_share"], "min_over_anchor": ctl["min_over_anchor"],
           "distinct_trees": res.get("distinct_trees")}
    out["hv_c0_over_single"] = out["hv_c0"] / out["hv_single"]
    out["dt_c0_minus_phn"] = out["dt_c0"] - out["dt_phn"] if out["dt_phn"] is not None else None
    return out


def summarize(paths: list[Path]) -> dict:
    groups: dict[str, dict[str, dict]] = {}
    for p in paths:
        rep = json.loads(p.read_text())
        for name, res in rep["runs"].items():
            tag = res.get("setting") or re.sub(r"-s\d+$", "", Path(name).name)
            groups.setdefault(tag, {})[f"{p.name}:{Path(name).name}"] = flatten(res)
    out = {}
    for tag, runs in groups.items():
        stats = {}
        for m in METRICS:
            v = np.array([r[m] for r in runs.values() if r.get(m) is not None], dtype=float)
            if len(v):
                stats[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}
        out[tag] = {"runs": runs, "stats": stats}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", type=Path, nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    for p in args.reports:
        if not p.is_file():
            sys.exit(f"error: {p}: no such report")
    out = summarize(args.reports)
    cols = ("hv_c0", "hv_c1", "hv_single", "hv_phn", "dt_c0", "dt_c1", "dt_phn", "c_ratio", "span", "monotone")
    print("| setting | seeds | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for tag, g in out.items():
        s = g["stats"]
        cells = []
        for c in cols:
            if c in s:
                cells.append(f"{s[c]['mean']:.3f} ± {s[c]['std']:.3f}" if not c.startswith("dt") else
                             f"{s[c]['mean']:+.1f} ± {s[c]['std']:.1f}")
            else:
                cells.append("–")
        print(f"| {tag} | {len(g['runs'])} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
