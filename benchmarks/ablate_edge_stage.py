"""Controllability ablation: retrain only the edge hypernet (stage 1) of a run with other
regularizer/schedule settings, from the same frozen anchor, and report tree sizes.

The issue-4 numbers that led to the synth presets' ``inactive_detach`` and
``lambda_active = 5`` come from this script: for each setting, mean params (M) of the
predicted trees over 300 r ~ Dir(0.2) at c in {0, .25, .5, .75, 1}, a skewed r (0.85 on one
task, mean over tasks), uniform r, and one named r. Each setting gets a fresh copy of the
run's anchor (and its cached RSA affinity) in OUT/<tag>; the source run is never written.

    python benchmarks/ablate_edge_stage.py RUN --out runs/ablate \\
        --setting paper='{"inactive_detach": false, "lambda_active": 1.0}' \\
        --setting detach='{"inactive_detach": true, "lambda_active": 1.0}' \\
        --setting detach_la5='{"inactive_detach": true, "lambda_active": 5.0}'

Seeds are fixed (the run's seed), so a rerun on the same machine reproduces the numbers;
each setting costs one edge stage (about 1-2 minutes for synth-nyu on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

CS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _settings(items: list[str]) -> dict[str, dict]:
    out = {}
    for item in items:
        tag, sep, js = item.partition("=")
        if not sep or not tag.replace("_", "").replace("-", "").isalnum():
            sys.exit(f"error: --setting {item!r}: expected TAG='{{json train overrides}}'")
        try:
            over = json.loads(js)
        except json.JSONDecodeError as e:
            sys.exit(f"error: --setting {tag}: not JSON ({e})")
        if not isinstance(over, dict):
            sys.exit(f"error: --setting {tag}: expected a JSON object of train settings")
        out[tag] = over
    return out


def _prepare(src: Path, dst: Path, over: dict) -> None:
    """A copy of ``src`` with the anchor done and stage 1/2 reset, ``over`` applied."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in ("anchor.safetensors", "affinity.json"):
        if (src / f).is_file():
            shutil.copy(src / f, dst / f)
    cfg = json.loads((src / "config.json").read_text())
    unknown = sorted(set(over) - set(cfg["preset"]["train"]))
    if unknown:
        sys.exit(f"error: unknown train settings {unknown}; expected keys of the run's preset.train")
    for stage in ("edge", "weight", "phn-bn"):
        cfg["stages"][stage] = {"done": False}
    cfg["preset"]["train"].update(over)
    (dst / "config.json").write_text(json.dumps(cfg, indent=1))
    (dst / "logs").mkdir()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="trained run directory (its anchor stage must be done)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the per-setting copies")
    ap.add_argument("--setting", action="append", default=[], metavar="TAG=JSON",
                    help="train-setting overrides for one edge stage (repeatable)")
    ap.add_argument("--r", default="0.6,0.2,0.2", help="one task preference to report per c")
    ap.add_argument("--n-r", type=int, default=300, help="r ~ Dir(0.2) samples for the mean")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    from dymu_rt.control.preference import parse_r, sample_preferences
    from dymu_rt.models.cost import CostModel
    from dymu_rt.train.checkpoint import RunDir
    from dymu_rt.train.controller import train_edge

    settings = _settings(args.setting)
    if not settings:
        sys.exit("error: give at least one --setting TAG=JSON")
    src = RunDir(args.run)
    if not src.stage_done("anchor"):
        sys.exit(f"error: {args.run}: the anchor stage has not finished")
    cfg = src.read_config()
    n = len(cfg["preset"]["tasks"])
    try:
        named = parse_r(args.r, n)
    except ValueError as e:
        sys.exit(f"error: --r: {e}")
    opts = cfg.get("data_options") or {}
    seed = int(opts.get("seed") or 0)
    rs = [q.r for q in sample_preferences(n, args.n_r, np.random.default_rng(99))]
    skewed = [tuple(np.eye(n)[i] * 0.85 + 0.15 / n) for i in range(n)]
    uniform = [tuple([1.0 / n] * n)]

    results = {}
    for tag, over in settings.items():
        dst = args.out / tag
        _prepare(args.run, dst, over)
        run = RunDir(dst)
        t = time.perf_counter()
        train_edge(run, cfg.get("data", "synth"), seed, 100, opts.get("n_train"), opts.get("n_val"), False)
        secs = time.perf_counter() - t
        anchor, edge = run.load_anchor(), run.load_edge_hypernet()
        cost = CostModel(anchor)

        def mean_params(prefs, c):
            with torch.no_grad():
                return float(np.mean([cost.tree_cost(edge.architecture(
                    torch.tensor(r, dtype=torch.float32), torch.tensor(c, dtype=torch.float32))).params
                    for r in prefs])) / 1e6

        results[tag] = {"overrides": over, "edge_seconds": round(secs, 1),
                        **{name: [round(mean_params(prefs, c), 4) for c in CS]
                           for name, prefs in (("dir_mean", rs), ("skewed", skewed), ("uniform", uniform),
                                               (f"r={args.r}", [tuple(named)]))}}
    print(f"mean params (M) of the predicted trees at c = {', '.join(f'{c:g}' for c in CS)}")
    for tag, res in results.items():
        print(f"\n{tag}: {json.dumps(res['overrides'])} (edge stage {res['edge_seconds']} s)")
        for k, v in res.items():
            if isinstance(v, list):
                trend = "falls" if all(b <= a for a, b in zip(v, v[1:])) and v[-1] < v[0] else \
                        ("flat" if max(v) == min(v) else "not monotone")
                print(f"  {k:18s} {'  '.join(f'{x:.4f}' for x in v)}   ({trend})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
