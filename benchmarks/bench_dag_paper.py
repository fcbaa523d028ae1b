"""The DAG paper's network at its own size (Choi & Im 2023: VGG-16 states, DeepLab-v2 heads).

    python benchmarks/bench_dag_paper.py [--out benchmarks/results/dag_paper] [--threads 2]
        [--flows 3,5,7,9] [--step-batch 2] [--parts sizes,step,bundle] [--render]

Three parts, each at the paper presets' real size (dag-nyuv2 321x321, dag-pascal5 512x512):

1. **sizes** (no training): for each flow constant M, the central network's edges and
   parameters (stem + read-in + edge + read-out layers), the heads' parameters, and the
   GMACs of one image through the whole network (every edge, read-in and read-out kept:
   what the fine-tune stage would run if Algorithm 1 kept everything; the reduced network is
   a sub-graph of it). Ratios to the shared-bottom network (VGG-16 + one head per task, the
   paper's "# of Param" unit in Tables 2-4).
2. **step** (dag-nyuv2 only): wall time of one search-stage step (soft A, B, Γ; every task
   runs its own states; forward, backward, Adam on Θ and on A, B, Γ) on this CPU at batch
   ``--step-batch``, torch pinned to ``--threads`` threads, on procedural scenes written in
   NYU-v2's on-disk layout at 321x321; and the same step on synth-dag-nyu (64x64) in the
   same run, as a ratio. The CPU days a paper schedule would take follow from it.
3. **bundle** (dag-nyuv2, M = 3): a real-size run trained one step per stage on those scenes
   (``dymu-rt train --method dag``), built (``dymu-rt build``) and profiled
   (``dymu-rt profile --json``): bundle size, params, GMACs, ORT latency on this CPU. One
   step decides nothing about accuracy: the topology Algorithm 1 keeps after one search
   step is arbitrary; the point is the size and speed of a deployable artifact at paper scale.

Writes OUT.json and OUT.md. Numbers depend on the machine; say its load when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _sizes(flows: list[int]) -> list[dict]:
    from dymu_rt.app.inspect_model import dag_costs
    from dymu_rt.models.backbones import build_nodes, build_stem
    from dymu_rt.models.heads import build_head
    from dymu_rt.models.presets import get_preset

    rows = []
    for name in ("dag-nyuv2", "dag-pascal5"):
        preset = get_preset(name)
        stem, _ = build_stem(preset.backbone)
        nodes, infos = build_nodes(preset.backbone)
        vgg = sum(p.numel() for m in [stem, *nodes] for p in m.parameters())
        heads = sum(p.numel() for t in preset.tasks
                    for p in build_head(preset.head, infos[-1].out_channels, 0, t.out_channels).parameters())
        shared_bottom = vgg + heads
        # The same full-network cost `dymu-rt inspect PRESET` prints (every edge kept).
        for row in dag_costs(preset, flows=tuple(flows)):
            rows.append({"preset": name, "input": list(preset.input_size), "M": row["flow"], "edges": row["edges"],
                         "central_params": row["params"] - heads, "head_params": heads, "params": row["params"],
                         "gmacs": row["gmacs"], "shared_bottom_params": shared_bottom,
                         "vs_shared_bottom": row["params"] / shared_bottom})
    return rows


def _step_time(preset_name: str, data: str, flow: int, batch: int, repeats: int) -> dict:
    import torch

    from dymu_rt.models.dag import DagNet, default_spec
    from dymu_rt.models.presets import get_preset
    from dymu_rt.training.common import infinite_batches, make_split, make_tasks, weighted_task_loss
    from dymu_rt.training.dag import squeeze_loss

    preset = get_preset(preset_name)
    torch.manual_seed(0)
    net = DagNet(preset, default_spec(preset, flow)).train()
    tasks = make_tasks(preset)
    ds = make_split(preset, data, "train", n=max(batch, 4))
    batches = infinite_batches(ds, batch, 0)
    opt = torch.optim.Adam(net.weight_parameters(), lr=1e-3)
    u_opt = torch.optim.Adam(net.upper_parameters(), lr=1e-2)
    times = []
    for i in range(repeats + 1):                   # the first step warms allocators up
        b = next(batches)
        t0 = time.perf_counter()
        loss, _ = weighted_task_loss(tasks, net(b["image"]), b)
        loss = loss + 0.1 * squeeze_loss(net.gamma, float(net.spec.states))
        opt.zero_grad(set_to_none=True)
        u_opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        u_opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"preset": preset_name, "input": list(preset.input_size), "M": flow, "batch": batch,
            "step_s_median": times[len(times) // 2], "step_s_all": times}


def _tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def _cli(*args: str, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"error: dymu-rt {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/dag_paper")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flows", default="3,5,7,9")
    ap.add_argument("--step-batch", type=int, default=2)
    ap.add_argument("--step-repeats", type=int, default=2)
    ap.add_argument("--parts", default="sizes,step,bundle",
                    help="which parts to run; the others are kept from an existing OUT.json")
    ap.add_argument("--render", action="store_true", help="only re-render OUT.md from OUT.json")
    args = ap.parse_args()
    if args.render:
        out = Path(args.out)
        out.with_suffix(".md").write_text(_markdown(json.loads(out.with_suffix(".json").read_text())))
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    flows = [int(v) for v in args.flows.split(",")]
    parts = set(args.parts.split(","))
    out = Path(args.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    result: dict = {"threads": args.threads, "torch": torch.__version__, "load_before": os.getloadavg(),
                    **{k: old[k] for k in ("sizes", "step", "bundle") if k in old and k not in parts}}
    t0 = time.time()
    if "sizes" in parts:
        result["sizes"] = _sizes(flows)
        print(f"sizes done ({time.time() - t0:.0f} s)", flush=True)
    env = {**os.environ}
    with tempfile.TemporaryDirectory(prefix="dag-paper-") as tmp:
        data = Path(tmp) / "nyu321"
        _cli("data", "synth", "--out", str(data), "--n", "10", "--size", "321", "--layout", "nyuv2",
             "--previews", "0", env=env)
        if "step" in parts:
            small = _step_time("synth-dag-nyu", "synth", 3, args.step_batch, args.step_repeats)
            big = _step_time("dag-nyuv2", str(data), 3, args.step_batch, args.step_repeats)
            result["step"] = [small, big, {"ratio_paper_to_synth": big["step_s_median"] / small["step_s_median"]}]
            print(f"step done ({time.time() - t0:.0f} s): {big['step_s_median']:.1f} s per paper-size step",
                  flush=True)
        if "bundle" in parts:
            run, bundle = Path(tmp) / "run", Path(tmp) / "bundle"
            t1 = time.time()
            _cli("train", "--method", "dag", "--flow", "3", "--preset", "dag-nyuv2", "--data", str(data),
                 "--out", str(run), "--anchor-steps", "1", "--edge-steps", "1", "--weight-steps", "1",
                 "--batch", "2", "--n-train", "4", "--n-val", "2", "--quiet", env=env)
            train_s = time.time() - t1
            t1 = time.time()
            built = json.loads(_cli("build", str(run), "--out", str(bundle), "--json", env=env))
            build_s = time.time() - t1
            built_bytes = _tree_bytes(bundle)
            prof = json.loads(_cli("profile", "--bundle", str(bundle), "--json", "--iters", "5", "--warmup", "1",
                                   env=env))
            arch = json.loads((run / "architecture.json").read_text())
            result["bundle"] = {"train_s_3_steps_plus_eval": train_s, "build_s": build_s,
                                "bundle_bytes": built_bytes, "after_profile_bytes": _tree_bytes(bundle),
                                "engine_cache_bytes": _tree_bytes(bundle / "engines"),
                                "edges_kept": arch.get("edges_kept"), "edges_total": arch.get("edges_total"),
                                "build": built, "profile": prof}
            print(f"bundle done ({time.time() - t0:.0f} s)", flush=True)
    result["load_after"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict) -> str:
    lines = [f"# DAG paper network at paper size (torch {r['torch']}, {r['threads']} threads, "
             f"load {r['load_before'][0]:.1f} before / {r.get('load_after', [0])[0]:.1f} after)", "",
             "| preset | input | M | edges | central params (M) | heads (M) | total (M) | x shared-bottom | GMACs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in r["sizes"]:
        lines.append(f"| {s['preset']} | {s['input'][0]}x{s['input'][1]} | {s['M']} | {s['edges']} | "
                     f"{s['central_params'] / 1e6:.2f} | {s['head_params'] / 1e6:.2f} | {s['params'] / 1e6:.2f} | "
                     f"{s['vs_shared_bottom']:.2f} | {s['gmacs']:.1f} |")
    if "step" in r:
        small, big, ratio = r["step"]
        lines += ["", f"search step (fwd+bwd+Adam, batch {big['batch']}, M = 3): dag-nyuv2 "
                      f"{big['step_s_median']:.1f} s, synth-dag-nyu {small['step_s_median']:.3f} s "
                      f"(x{ratio['ratio_paper_to_synth']:.0f}); 60K steps (20K per stage) at that rate: "
                      f"{60000 * big['step_s_median'] / 86400:.0f} CPU days"]
    if "bundle" in r:
        b = r["bundle"]
        (t,) = b["profile"]["topologies"]
        size = (f"{b['bundle_bytes'] / 2**20:.1f} MiB as built (+{b['engine_cache_bytes'] / 2**20:.1f} MiB of ORT "
                f"engine cache the first `profile` wrote: {b['after_profile_bytes'] / 2**20:.1f} MiB)"
                if "engine_cache_bytes" in b else
                f"{b['bundle_bytes'] / 2**20:.1f} MiB after `profile` (its ORT engine cache included)")
        lines += ["", f"real-size bundle (dag-nyuv2, M = 3, one step per stage): {size}, "
                      f"edges kept {b['edges_kept']}/{b['edges_total']} (tasks x edges), "
                      f"train {b['train_s_3_steps_plus_eval']:.0f} s, build {b['build_s']:.0f} s; "
                      f"`dymu-rt profile` ({b['profile']['backend']}, {t['threads']} threads, batch {t['batch']}): "
                      f"{t['params'] / 1e6:.2f} M params, {t['gmacs']:.1f} GMACs, p50 {t['p50_ms']:.0f} ms, "
                      f"p90 {t['p90_ms']:.0f} ms ({t['iters']} runs), {t['achieved_gflop_s']:.0f} GFLOP/s"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
