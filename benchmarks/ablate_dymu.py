"""Issue 22's ablation: whole DYMU runs (anchor, edge, weight, PHN-BN) per setting and seed,
evaluated with the paper's protocol (r uniform on S_N).

Each ``--setting TAG=JSON`` is a set of train-setting overrides on the preset (e.g.
``shared='{"anchor_init": "shared", "anchor_pretrain_steps": 400}'``). Settings whose
anchor-stage settings (``anchor_*``) agree share one anchor per seed (trained once, copied),
so a controller-only ablation costs only its controller stages. Per setting and seed:

* HV / uniformity over 20 r ~ Dir(1) at c = 0 and 1, with and without adaptation, of the
  single-task anchor and of PHN-BN (trained once per anchor), on ``--n-val`` validation
  scenes at the preset's fixed reference point (``dymu-rt eval``'s table);
* deployed Δ_T at uniform r (c = 0, 1) and PHN-BN's (``dymu-rt compare``'s);
* mean GMACs c=1/c=0 over 1000 r ~ Dir(1) (and over its >= 2-active-task part), the grid's
  span and per-r monotone share (``bench_controllability.py``).

    nice -n 10 python benchmarks/ablate_dymu.py --preset synth-nyu --out runs/abl22 --seeds 0 \\
        --setting today='{"anchor_init": "independent", "active_reading": "child", "inactive_loss": true}' \\
        --setting new='{}' --workers 2 --json benchmarks/results/issue22/ablate-synth-nyu.json

Every run is resumable: rerunning the same command continues where it stopped.
Threads: one torch thread per worker (``--workers`` processes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


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


def _anchor_key(over: dict) -> str:
    return json.dumps({k: v for k, v in sorted(over.items()) if k.startswith("anchor_")})


def _train(job: dict) -> dict:
    """Train one run (all DYMU stages), copying a finished anchor from ``job['anchor_from']``."""
    import torch

    torch.set_num_threads(1)
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.pipeline import open_run, train

    out = Path(job["out"])
    t = time.perf_counter()
    run = open_run(out, job["preset"], "synth", job["over"], seed=job["seed"], n_val=job["n_val"])
    src = job.get("anchor_from")
    if src and not run.stage_done("anchor"):
        s = RunDir(src)
        shutil.copy(s.module_path("anchor"), run.module_path("anchor"))
        if (Path(src) / "affinity.json").is_file():
            shutil.copy(Path(src) / "affinity.json", out / "affinity.json")
        run.mark_done("anchor", {**s.read_config()["stages"]["anchor"], "copied_from": str(src)})
    stages = job.get("stages", "all")
    train(run, stages, progress=False)
    if job.get("phn"):
        train(run, "phn-bn", progress=False)
    return {"out": str(out), "seconds": round(time.perf_counter() - t, 1)}


def _evaluate(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from dymu_rt.evaluate.comparison import dymu_delta_t
    from dymu_rt.evaluate.controllability import controllability
    from dymu_rt.evaluate.controller import evaluate_controller
    from dymu_rt.run.layout import RunDir

    out = Path(job["out"])
    run = RunDir(out)
    phn_from = job.get("phn_from")
    if phn_from and not run.stage_done("phn-bn"):
        shutil.copy(Path(phn_from) / "phn_bn.safetensors", out / "phn_bn.safetensors")
        run.mark_done("phn-bn", {"copied_from": phn_from})
    rep = evaluate_controller(out, n_r=20, n_val=job["n_val"], seed=job["seed"], progress=False, eta=1.0)
    ctl = controllability(run.load_anchor(), run.load_edge_hypernet(), eta=1.0)
    dt = dymu_delta_t(out, n_val=job["n_val"], seed=job["seed"])
    anchor_stage = run.read_config()["stages"]["anchor"]
    return {
        "table": [{k: row[k] for k in ("method", "c", "hv", "uniformity", "params", "gmacs")} for row in rep["table"]],
        "mean_gmacs_by_c": rep["controllability"]["mean_gmacs_by_c"],
        "mean_gmacs_multi_active_by_c": rep["controllability"]["mean_gmacs_multi_active_by_c"],
        "controllability": {"c_ratio_gmacs": ctl["c_ratio"]["gmacs"], "c_ratio_multi_active": ctl["c_ratio_multi_active"],
                            "multi_active_share": ctl["multi_active_share"], "monotone_share": ctl["monotone_share"],
                            "min_over_anchor": ctl["range"]["min_over_anchor"], "span": ctl["range"]["max_over_min"]},
        "delta_t": {"dymu_by_c": {c: v["mean"] for c, v in dt["by_c"].items()},
                    "phn_bn": dt["phn_bn"]["mean"] if "phn_bn" in dt else None},
        "anchor_val": anchor_stage.get("val"),
        "distinct_trees": rep["distinct_trees"],
    }


def _pool(fn, jobs, workers):
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
        return list(ex.map(fn, jobs))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="synth-nyu")
    ap.add_argument("--out", type=Path, help="folder of the runs (required unless --eval-runs)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--setting", action="append", default=[], metavar="TAG=JSON")
    ap.add_argument("--n-val", type=int, default=400, help="validation scenes (the issue's protocol: 400)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("--eval-runs", type=Path, nargs="+", help="only evaluate these finished runs (each with its "
                    "own PHN-BN) with the same protocol, and write --json")
    args = ap.parse_args(argv)
    if args.eval_runs:
        from dymu_rt.run.layout import RunDir

        jobs = []
        for r in args.eval_runs:
            opts = RunDir(r).read_config().get("data_options") or {}
            jobs.append({"out": str(r), "seed": int(opts.get("seed") or 0), "n_val": args.n_val})
        results = _pool(_evaluate, jobs, args.workers)
        report = {"n_val": args.n_val, "protocol": "r ~ Dir(1): 20 r for HV, 1000 r for cost",
                  "threads_per_worker": 1, "runs": {}}
        for j, res in zip(jobs, results):
            cfg = RunDir(j["out"]).preset().train
            report["runs"][str(j["out"])] = {"train": {k: getattr(cfg, k) for k in (
                "anchor_init", "anchor_pretrain_steps", "anchor_steps", "edge_steps", "weight_steps", "phn_steps",
                "active_reading", "inactive_loss", "inactive_detach", "lambda_active", "lambda_inactive",
                "identity_prior", "identity_prior_learnable", "edge_eta", "edge_hard_gumbel", "edge_prefs_per_step",
                "c_zero_share", "identity_prior_c_slope", "anchor_l2sp")},
                **res}
        print(json.dumps(report, indent=1)[:20000])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
        return 0
    if args.out is None:
        sys.exit("error: --out is required (the folder of the runs)")
    settings = _settings(args.setting)
    if not settings:
        sys.exit("error: give at least one --setting TAG=JSON")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        sys.exit(f"error: --seeds {args.seeds!r}: expected comma-separated integers")

    # Phase 1: one full run per (anchor settings, seed) — the first setting that has them — with PHN-BN.
    owners: dict[tuple, str] = {}
    first, rest = [], []
    for seed in seeds:
        for tag, over in settings.items():
            key = (_anchor_key(over), seed)
            job = {"out": str(args.out / f"{tag}-s{seed}"), "preset": args.preset, "over": over, "seed": seed,
                   "n_val": args.n_val, "tag": tag}
            if key not in owners:
                owners[key] = job["out"]
                first.append({**job, "phn": True})
            else:
                rest.append({**job, "anchor_from": owners[key]})
    t0 = time.perf_counter()
    _pool(_train, first, args.workers)
    _pool(_train, rest, args.workers)
    print(f"trained {len(first) + len(rest)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.no_eval:
        return 0
    evals = [{"out": j["out"], "seed": j["seed"], "n_val": j["n_val"],
              "phn_from": j.get("anchor_from")} for j in first + rest]
    results = _pool(_evaluate, evals, args.workers)
    report = {"preset": args.preset, "seeds": seeds, "n_val": args.n_val, "protocol": "r ~ Dir(1): 20 r for HV, "
              "1000 r for cost", "threads_per_worker": 1, "settings": settings, "runs": {}}
    for j, res in zip(first + rest, results):
        report["runs"][Path(j["out"]).name] = {"setting": j["tag"], "seed": j["seed"], **res}
    for name, res in report["runs"].items():
        print(f"\n{name}:")
        for row in res["table"]:
            print(f"  {row['method']:22s} c={row['c'] if row['c'] is not None else '-'}  HV {row['hv']:.4f}  "
                  f"uniformity {row['uniformity']:.4f}  {row['gmacs']:.4f} GMACs")
        ctl = res["controllability"]
        print(f"  c-ratio {ctl['c_ratio_gmacs']:.3f} (>=2 active: {ctl['c_ratio_multi_active']}); span "
              f"{ctl['span']:.2f}x; monotone {100 * ctl['monotone_share']:.1f}%; Δ_T {res['delta_t']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
