"""Examples shown at the end of each command's ``--help`` (the CLI reference lists them too).

Each is a command a user can paste as is (files named in them are the ones the quick start
makes: ``demo-out/``), with what it does after ``#``.
"""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "demo": [("dymu-rt demo --out demo-out", "the whole pipeline: a few minutes on 2 idle cores"),
             ("dymu-rt demo --out smoke --scale 0.05", "a smoke run: every step, tiny settings"),
             ("dymu-rt demo --out demo-out --threads 1", "leave a core to other work")],
    "run": [("dymu-rt run --r 0.6,0.2,0.2 --c 0.5 photo.jpg", "the shipped model; PNGs in dymu-out/"),
            ("dymu-rt run --r 0.6,0.2,0.2 --c 1 photos/ --out out --json", "a folder; JSON summary"),
            ("dymu-rt run --r 1,0,0 --latency-budget 5 photo.jpg", "smallest c that fits 5 ms (after `profile`)"),
            ("dymu-rt run --r 0.6,0.2,0.2 --c 0.5 photo.jpg --save-outputs raw --iters 0",
             "raw outputs as .npy; no timing")],
    "profile": [("dymu-rt profile", "the shipped bundle on this CPU (stored in the user cache)"),
                ("dymu-rt profile --bundle demo-out/bundle --iters 100", "a bundle you built"),
                ("dymu-rt profile --bundle my-bundle --profile jetson-orin-nano", "on a Jetson (TensorRT)")],
    "profiles": [("dymu-rt profiles", "every device profile and its backend")],
    "inspect": [("dymu-rt inspect", "the shipped bundle: trees, cost, measured latency"),
                ("dymu-rt inspect demo-out/bundle --verify", "also check every file's sha256"),
                ("dymu-rt inspect synth-nyu", "a preset: params and GFLOPs next to the paper's"),
                ("dymu-rt inspect nyuv2 --size 416x416 --json", "a paper preset at another size, as JSON")],
    "build": [("dymu-rt build demo-out/run --grid 0.1 --c-grid 0.25 --out my-bundle", "a finer grid"),
              ("dymu-rt build runs/ada", "a static (AdaShare / DAG) run: one topology")],
    "plot": [("dymu-rt plot demo-out/bundle", "resource usage over the grid (PNG beside the bundle)")],
    "eval": [("dymu-rt eval demo-out/run --grid 0.25", "HV, uniformity and cost over a grid"),
             ("dymu-rt eval runs/dag5 --single-task demo-out/run --json", "a static run's Δ_T")],
    "compare": [("dymu-rt compare runs/synth-nyu runs/ada runs/dag5 --out cmp", "Δ_T against measured latency")],
    "calibrate": [("dymu-rt calibrate my-bundle --synth 64", "INT8 ranges from 64 procedural scenes"),
                  ("dymu-rt calibrate my-bundle --images calib/", "from your own pictures")],
    "check": [("dymu-rt check demo-out/bundle", "every backend/precision here against FP32"),
              ("dymu-rt check my-bundle --profile x86-64-cpu-int8 --json", "INT8 after `calibrate`")],
    "data": [("dymu-rt data synth --out scenes --n 2000 --size 128", "procedural scenes, NYU-v2 layout"),
             ("dymu-rt data synth --out pascal --n 500 --layout pascal", "PASCAL-Context layout")],
    "data synth": [("dymu-rt data synth --out scenes --n 2000 --size 128", "procedural scenes, NYU-v2 layout"),
                   ("dymu-rt data synth --out pascal --n 500 --layout pascal", "PASCAL-Context layout")],
    "train": [("dymu-rt train --preset synth-nyu --out runs/synth-nyu", "anchor, edge and weight hypernets"),
              ("dymu-rt train --method dag --flow 5 --preset synth-nyu --out runs/dag5", "the DAG network"),
              ("dymu-rt train --preset nyuv2 --data /data/nyuv2 --out runs/nyuv2 --device cuda",
               "the paper's preset on a GPU")],
    "export": [("dymu-rt export triton demo-out/bundle --out model_repo", "a Triton model repository")],
    "export triton": [("dymu-rt export triton demo-out/bundle --out model_repo", "ONNX Runtime backend"),
                      ("dymu-rt export triton my-bundle --out repo --backend tensorrt --max-batch 4",
                       "TensorRT plans")],
}


def epilog(command: str) -> str:
    """The ``Examples:`` block of ``command``'s help (click keeps ``\\b`` paragraphs as written)."""
    rows = EXAMPLES.get(command, [])
    if not rows:
        return ""
    width = max(len(cmd) for cmd, _ in rows)
    lines = [f"  {cmd.ljust(width)}  # {what}" for cmd, what in rows]
    return "Examples:\n\n\b\n" + "\n".join(lines)
