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

``--stage2`` also trains each setting's weight hypernet, ``--eval`` then reports its HV /
uniformity table (``dymu-rt eval``'s, same reference point, c in {0, 1}; ``--phn`` trains
the PHN-BN baseline once from the same anchor and adds its rows) and the
controllability numbers of issue 12 (GMACs c-ratio over r ~ Dir(0.2), per-r monotone share
on the 0.1 grid, smallest tree / anchor; dymu_rt.evaluate.controllability). ``--workers K``
runs K settings at once (one torch thread each).
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


def _one(job: dict, tag: str, over: dict) -> dict:
    """Train (edge, optionally weight) and measure one setting in OUT/<tag>."""
    torch.set_num_threads(1)
    from dymu_rt.models.cost import CostModel
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.controller import train_edge, train_weight

    cfg, opts, seed = job["cfg"], job["opts"], job["seed"]
    dst = Path(job["out"]) / tag
    _prepare(Path(job["run"]), dst, over)
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

    res = {"overrides": over, "edge_seconds": round(secs, 1),
           **{name: [round(mean_params(prefs, c), 4) for c in CS]
              for name, prefs in (("dir_mean", job["rs"]), ("skewed", job["skewed"]),
                                  ("uniform", job["uniform"]), (f"r={job['r_text']}", [job["named"]]))}}
    if job["stage2"]:
        train_weight(run, cfg.get("data", "synth"), seed, 100, opts.get("n_train"), False)
    return res


def _phn(job: dict) -> str:
    """Train the PHN-BN baseline once, on a copy of the source run's anchor (OUT/_phn-bn)."""
    torch.set_num_threads(1)
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.phn import train_phn_bn

    dst = Path(job["out"]) / "_phn-bn"
    _prepare(Path(job["run"]), dst, {})
    opts = job["opts"]
    train_phn_bn(RunDir(dst), job["cfg"].get("data", "synth"), job["seed"], opts.get("n_train"), False)
    return str(dst)


def _evaluate(job: dict, tag: str, phn_dir: str | None) -> dict:
    """HV / uniformity table (with PHN-BN when trained) and controllability of one setting."""
    torch.set_num_threads(1)
    from dymu_rt.evaluate.controllability import controllability
    from dymu_rt.evaluate.controller import evaluate_controller
    from dymu_rt.run.layout import RunDir

    dst = Path(job["out"]) / tag
    run = RunDir(dst)
    if phn_dir is not None:
        shutil.copy(Path(phn_dir) / "phn_bn.safetensors", dst / "phn_bn.safetensors")
        run.mark_done("phn-bn", {"copied_from": phn_dir})
    rep = evaluate_controller(dst, n_r=job["n_eval_r"], n_val=job["n_val"], seed=job["seed"], progress=False)
    ctl = controllability(run.load_anchor(), run.load_edge_hypernet())
    return {"table": [{k: row[k] for k in ("method", "c", "hv", "uniformity", "params", "gmacs")}
                      for row in rep["table"]],
            "controllability": {"c_ratio_gmacs": ctl["c_ratio"]["gmacs"], "monotone_share": ctl["monotone_share"],
                                "min_over_anchor": ctl["range"]["min_over_anchor"],
                                "span": ctl["range"]["max_over_min"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="trained run directory (its anchor stage must be done)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the per-setting copies")
    ap.add_argument("--setting", action="append", default=[], metavar="TAG=JSON",
                    help="train-setting overrides for one edge stage (repeatable)")
    ap.add_argument("--r", default="0.6,0.2,0.2", help="one task preference to report per c")
    ap.add_argument("--n-r", type=int, default=300, help="r ~ Dir(0.2) samples for the mean")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--stage2", action="store_true", help="also train each setting's weight hypernet")
    ap.add_argument("--eval", action="store_true", help="stage 2, then HV table + controllability per setting")
    ap.add_argument("--n-eval-r", type=int, default=20, help="--eval: r ~ Dir(0.2) samples (x c in {0, 1})")
    ap.add_argument("--n-val", type=int, default=None, help="--eval: validation scenes (default: the run's)")
    ap.add_argument("--workers", type=int, default=1, help="settings trained at once (processes)")
    ap.add_argument("--phn", action="store_true", help="--eval: also train PHN-BN once and put it in every table")
    args = ap.parse_args(argv)

    from dymu_rt.core.preference import parse_r, sample_preferences
    from dymu_rt.run.layout import RunDir

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

    job = {"run": str(args.run), "out": str(args.out), "cfg": cfg, "seed": seed, "opts": opts,
           "rs": rs, "skewed": skewed, "uniform": uniform, "named": tuple(named), "r_text": args.r,
           "stage2": args.stage2 or args.eval, "eval": args.eval, "n_eval_r": args.n_eval_r,
           "n_val": args.n_val}
    items = list(settings.items())
    tags, overs = [t for t, _ in items], [o for _, o in items]
    if args.workers > 1 and len(items) + args.phn > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as ex:
            phn_future = ex.submit(_phn, job) if args.phn else None
            outs = list(ex.map(_one, [job] * len(items), tags, overs))
            phn_dir = phn_future.result() if phn_future is not None else None
            if args.eval:
                evals = list(ex.map(_evaluate, [job] * len(items), tags, [phn_dir] * len(items)))
    else:
        phn_dir = _phn(job) if args.phn else None
        outs = [_one(job, tag, over) for tag, over in items]
        if args.eval:
            evals = [_evaluate(job, tag, phn_dir) for tag in tags]
    if args.eval:
        for res, ev in zip(outs, evals):
            res.update(ev)
    results = dict(zip(tags, outs))
    print(f"mean params (M) of the predicted trees at c = {', '.join(f'{c:g}' for c in CS)}")
    for tag, res in results.items():
        print(f"\n{tag}: {json.dumps(res['overrides'])} (edge stage {res['edge_seconds']} s)")
        for k, v in res.items():
            if isinstance(v, list) and k != "table":
                trend = "falls" if all(b <= a for a, b in zip(v, v[1:])) and v[-1] < v[0] else \
                        ("flat" if max(v) == min(v) else "not monotone")
                print(f"  {k:18s} {'  '.join(f'{x:.4f}' for x in v)}   ({trend})")
        if "table" in res:
            for row in res["table"]:
                print(f"  {row['method']:22s} c={row['c'] if row['c'] is not None else '-'}  HV {row['hv']:.4f}  "
                      f"uniformity {row['uniformity']:.4f}  {row['gmacs']:.4f} GMACs")
            ctl = res["controllability"]
            print(f"  GMACs c-ratio {ctl['c_ratio_gmacs']:.3f}; monotone share {100 * ctl['monotone_share']:.1f}%; "
                  f"smallest / anchor {ctl['min_over_anchor']:.3f}; span {ctl['span']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
