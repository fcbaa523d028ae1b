"""Issue 22 diagnostic: is the edge hypernet's tree at (r, c) worse than the anchor's own streams?

For each run, the weighted task losses w_i L_i of the raw anchor (no weight hypernet) on
``--n`` training scenes (seed ``--data-seed``, not augmented) for the identity tree (every
task on its own stream) and for the edge hypernet's tree at uniform r and at r = (0.6, 0.2,
0.2), c = 0 and 1, with the tree's GMACs over the anchor's. If the c = 0 tree shares nodes
yet has a clearly higher loss than the identity tree, stage 1's task loss did not choose
that sharing: the sharing pressure c·λ_A·L_active of c > 0 leaked into c = 0.

    python benchmarks/tree_loss.py runs/full22/new-s0 runs/s3/la0-s0 --json out.json

One torch thread; about 20 s per run on the synth-nyu preset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="runs with a finished edge stage")
    ap.add_argument("--n", type=int, default=128, help="training scenes (default 128)")
    ap.add_argument("--data-seed", type=int, default=5, help="seed of the procedural scenes (default 5)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.n < 1:
        sys.exit(f"error: --n {args.n}: expected an integer >= 1")

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from dymu_rt.core.tree import identity_table
    from dymu_rt.models.cost import CostModel
    from dymu_rt.run.layout import RunDir
    from dymu_rt.training.common import make_split, make_tasks

    report = {"n": args.n, "data_seed": args.data_seed, "loss": "w_i L_i per task, raw anchor", "runs": {}}
    for path in args.runs:
        run = RunDir(path)
        if not run.stage_done("edge"):
            sys.exit(f"error: {path}: its edge stage is not finished")
        preset, anchor, edge = run.preset(), run.load_anchor(), run.load_edge_hypernet()
        tasks, cost = make_tasks(preset), CostModel(anchor)
        data = make_split(preset, "synth", "train", n=args.n, seed=args.data_seed)
        items = [data[i] for i in range(args.n)]
        images = torch.stack([it["image"] for it in items])
        targets = {t.name: torch.stack([it["targets"][t.name] for it in items]) for t in tasks}
        masks = {t.name: torch.stack([it["masks"][t.name] for it in items]) for t in tasks}
        full = cost.full_cost().macs

        def row(parents) -> dict:
            with torch.no_grad():
                out = anchor(images, parents)
            per = [float(t.loss(out[t.name], targets[t.name], masks[t.name])) * t.loss_weight for t in tasks]
            return {"weighted_losses": per, "sum": float(np.sum(per)),
                    "gmacs_over_anchor": cost.tree_cost(parents).macs / full}

        res = {"identity": row(identity_table(anchor.num_layers, anchor.num_tasks))}
        n = anchor.num_tasks
        for name, r in (("uniform", [1.0 / n] * n), ("skewed", [0.6] + [0.4 / (n - 1)] * (n - 1))):
            for c in (0.0, 1.0):
                res[f"{name} c={c:g}"] = row(edge.architecture(torch.tensor(r), c))
        report["runs"][str(path)] = res
        print(path)
        for k, v in res.items():
            print(f"  {k:14s} sum {v['sum']:.3f}  ({' '.join(f'{x:.3f}' for x in v['weighted_losses'])})  "
                  f"{v['gmacs_over_anchor']:.2f}x anchor GMACs")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
