"""Stage-length convergence from finished runs' training logs (issue 22): per stage, the
training loss vs step (moving average), its mean over the runs given, and how much it still
fell over the stage's last quarter.

The logs hold the *training* loss every 10 steps (``RUN/logs/<stage>.jsonl``: the anchor
stages' task loss on augmented batches; the edge stage's task loss without the regularizer,
``task_loss``; the weight and PHN-BN stages' loss at a random preference each step), not a
validation loss: no validation pass runs during training. Controller losses depend on the
sampled (r, c), so they are averaged over a ``--window``-step window (default 100).

    python benchmarks/plot_convergence.py runs/full22/new-s0 runs/full22/new-s1 runs/full22/new-s2 \\
        --json benchmarks/results/issue22/convergence.json --png benchmarks/results/issue22/convergence.png

``late_drop`` = (mean loss over the third quarter - mean over the last quarter) / mean over
the third quarter: the share the loss still fell in the last 25 % of the stage (0 = flat).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

STAGES = (("anchor-pretrain", "loss"), ("anchor", "loss"), ("edge", "task_loss"), ("weight", "loss"),
          ("phn-bn", "loss"))


def read_curve(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    steps, vals = [], []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if key in rec:
                steps.append(int(rec["step"]))
                vals.append(float(rec[key]))
    return np.asarray(steps), np.asarray(vals)


def late_drop(vals: np.ndarray) -> float:
    n = len(vals)
    q3, q4 = vals[n // 2:3 * n // 4], vals[3 * n // 4:]
    if len(q3) == 0 or len(q4) == 0:
        return float("nan")
    return float((q3.mean() - q4.mean()) / q3.mean())


def smooth(vals: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, len(vals)))
    return np.convolve(vals, np.ones(k) / k, mode="valid")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--window", type=int, default=100, help="moving-average window in steps (logs every 10)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args(argv)
    if args.window < 10:
        sys.exit("error: --window must be >= 10 (the logs hold one loss every 10 steps)")
    k = args.window // 10
    report = {"window_steps": args.window, "loss": "training loss from RUN/logs (no validation pass runs in "
              "training)", "stages": {}}
    curves = {}
    for stage, key in STAGES:
        per_run = {}
        for run in args.runs:
            path = run / "logs" / f"{stage}.jsonl"
            if path.is_file():
                steps, vals = read_curve(path, key)
                if len(vals) >= 8:
                    per_run[str(run)] = (steps, vals)
        if not per_run:
            continue
        drops = {r: late_drop(v) for r, (_, v) in per_run.items()}
        n = min(len(v) for _, v in per_run.values())
        mean = np.mean([v[:n] for _, v in per_run.values()], axis=0)
        steps = next(iter(per_run.values()))[0][:n]
        curves[stage] = (steps, mean, per_run)
        report["stages"][stage] = {"key": key, "steps": int(steps[-1]), "runs": len(per_run),
                                   "late_drop_by_run": drops,
                                   "late_drop_mean": float(np.nanmean(list(drops.values()))),
                                   "late_drop_of_mean_curve": late_drop(mean),
                                   "final_quarter_mean": float(mean[3 * n // 4:].mean())}
        print(f"{stage:16s} {int(steps[-1]):5d} steps, {len(per_run)} runs: loss still fell "
              f"{100 * report['stages'][stage]['late_drop_mean']:.1f} % over the last quarter (per run: "
              + ", ".join(f"{100 * d:.1f}" for d in drops.values()) + ")")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.png and curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3.2))
        axes = np.atleast_1d(axes)
        for ax, (stage, (steps, mean, per_run)) in zip(axes, curves.items()):
            for run, (s, v) in per_run.items():
                sm = smooth(v, k)
                ax.plot(s[k - 1:k - 1 + len(sm)], sm, lw=0.8, alpha=0.5, label=Path(run).name)
            sm = smooth(mean, k)
            ax.plot(steps[k - 1:k - 1 + len(sm)], sm, "k-", lw=1.6, label="mean")
            ax.axvspan(steps[3 * len(steps) // 4], steps[-1], color="grey", alpha=0.12)
            ax.set_title(f"{stage} ({STAGES[[s for s, _ in STAGES].index(stage)][1]})", fontsize=9)
            ax.set_xlabel("step")
        axes[0].set_ylabel(f"training loss, {args.window}-step mean")
        axes[-1].legend(fontsize=6)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=100)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
