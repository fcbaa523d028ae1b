"""Issue 22, third session: an edge-stage lever retrained on a copy of a finished run.

The anchor stage (shared pre-training, anchor, RSA affinity) and the PHN-BN baseline do not
depend on the edge-stage settings, so a lever on stage 1 only needs stage 1 (edge hypernet)
and stage 2 (weight hypernet) retrained: this copies SRC's anchor-side files and PHN-BN into
OUT (created; never written in SRC), applies the train-setting OVERRIDES (JSON) and trains the
stages named by --stages. With --screen it then prints the controllability of the new edge
hypernet (c-ratio, span, monotone share over r ~ Dir(1), the same numbers as
``ablate_dymu.py``) and writes them to --json; the full protocol (HV, Δ_T) is
``ablate_dymu.py --eval-runs OUT``.

    nice -n 5 python benchmarks/lever_edge.py --src runs/full22/new-s0 --out runs/s3/prior8-s0 \\
        --set '{"identity_prior": 8.0}' --stages edge --screen --json runs/s3/prior8-s0.json

One torch thread. Resumable (rerunning continues the stages). ``ablate_edge_stage.py`` also
retrains stage 1 from a finished anchor, but reports tree sizes under r ~ Dir(0.2) (issue 4's
protocol) and does not carry the pre-training and PHN-BN over; this script makes a run folder
that ``ablate_dymu.py --eval-runs`` evaluates with the paper's protocol.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, required=True, help="finished run whose anchor stage is reused (read only)")
    ap.add_argument("--out", type=Path, required=True, help="new run folder")
    ap.add_argument("--set", default="{}", help="JSON train-setting overrides for the edge/weight stages")
    ap.add_argument("--stages", default="controller", help="edge | controller (edge + weight)")
    ap.add_argument("--screen", action="store_true", help="print the edge hypernet's controllability")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        over = json.loads(args.set)
    except json.JSONDecodeError as e:
        sys.exit(f"error: --set {args.set!r} is not JSON ({e})")
    if not isinstance(over, dict) or any(k.startswith("anchor_") for k in over):
        sys.exit("error: --set expects a JSON object of edge/weight-stage settings (no anchor_* setting: "
                 "the anchor is copied with its own)")
    if args.stages not in ("edge", "controller"):
        sys.exit(f"error: --stages {args.stages!r}: expected edge or controller")
    if args.out.resolve() == args.src.resolve():
        sys.exit("error: --out must differ from --src (the source run is read only)")

    import torch

    torch.set_num_threads(1)
    from dymu_rt.training.anchor import PRETRAIN
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.controller import train_edge
    from dymu_rt.training.pipeline import open_run, train

    src = RunDir(args.src)
    if not src.stage_done("anchor"):
        sys.exit(f"error: --src {args.src}: its anchor stage is not finished")
    opts = src.read_config().get("data_options") or {}
    seed = int(opts.get("seed") or 0)
    t = time.perf_counter()
    # The anchor is copied, so the new run records the source's anchor settings (e.g. an
    # anchor trained with anchor_l2sp), whatever the preset's defaults are.
    base = {k: v for k, v in src.preset().train.__dict__.items() if k.startswith("anchor_")}
    run = open_run(args.out, src.preset().name, "synth", {**base, **over}, seed=seed, n_val=opts.get("n_val"))
    for stage, files in ((PRETRAIN, ["anchor_pretrain"]), ("anchor", ["anchor"]), ("phn-bn", ["phn_bn"])):
        if src.stage_done(stage) and not run.stage_done(stage):
            for f in files:
                shutil.copy(src.module_path(f), run.module_path(f))
            if stage == "anchor" and (args.src / "affinity.json").is_file():
                shutil.copy(args.src / "affinity.json", args.out / "affinity.json")
            run.mark_done(stage, {**src.read_config()["stages"][stage], "copied_from": str(args.src)})
    if args.stages == "edge":
        train_edge(run, "synth", seed, n_val=opts.get("n_val"), progress=False)
    else:
        train(run, "controller", progress=False)
    seconds = round(time.perf_counter() - t, 1)
    res = {"src": str(args.src), "out": str(args.out), "seed": seed, "overrides": over, "seconds": seconds}
    if args.screen:
        from dymu_rt.evaluate.controllability import controllability

        ctl = controllability(run.load_anchor(), run.load_edge_hypernet(), eta=1.0)
        res["controllability"] = {"c_ratio_gmacs": ctl["c_ratio"]["gmacs"],
                                  "c_ratio_multi_active": ctl["c_ratio_multi_active"],
                                  "monotone_share": ctl["monotone_share"],
                                  "min_over_anchor": ctl["range"]["min_over_anchor"],
                                  "span": ctl["range"]["max_over_min"],
                                  "mean_over_anchor_by_c": {c: v["gmacs"] / ctl["anchor"]["gmacs"]
                                                            for c, v in ctl["dir_mean_by_c"].items()}}
    print(json.dumps(res, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
