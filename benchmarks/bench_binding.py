"""Benchmark: how to bind a preference's BN weights into an ONNX Runtime topology engine.

Measures, in one run and on one topology of a bundle (the one serving the most grid
points), every binding mode of :mod:`dymu_rt.backends.onnxruntime`:

* ``session``       (a) a new model + session per preference;
* ``initializers``  (b) ``SessionOptions.add_initializer`` overrides, a session per preference;
* ``affine``        (c) BN scale/shift as runtime inputs (graph surgery), one session;
* ``affine+io``     (d) ``affine`` run through IO binding with the scale/shift pre-made as
                    OrtValues (and outputs allocated by ORT) instead of a feed dict.

For each: engine load time, switch cost (binding another preference's weights, the
hypernet + fold arithmetic excluded — it is common to all modes and reported apart), and
steady-state latency at a fixed preference. Steady-state runs are interleaved across
modes in rounds, so load on a shared machine hits all modes alike; results are reported as
ratios to ``affine`` within this one run, plus the break-even: how many frames a
preference must be held before the fastest per-frame mode (costlier to switch) pays off
over ``affine``.

Usage::

    python benchmarks/bench_binding.py [BUNDLE] [--batch 1] [--iters 200] [--switches 10]
                                       [--threads 1] [--out bench-out/binding]

Without BUNDLE it runs on the runtime tests' fixture bundle (written to a temp dir). It
prints a table and writes ``binding.json`` and ``binding.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("session", "initializers", "affine", "affine+io")


def _fixture_bundle(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "runtime"))
    from bundle_fixture import write_bundle

    return write_bundle(tmp / "fixture-bundle")


class _IoRunner:
    """(d): affine with IO binding; scale/shift OrtValues made once per switch."""

    def __init__(self, engine):
        self.engine = engine

    def prepare(self, weights):
        import onnxruntime as ort

        b = self.engine.prepare(weights)
        return b.session, {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in b.feeds.items()}

    def run(self, images, bound):
        session, values = bound
        io = session.io_binding()
        io.bind_cpu_input("image", images)
        for k, v in values.items():
            io.bind_ortvalue_input(k, v)
        for name in self.engine.output_names:
            io.bind_output(name)
        session.run_with_iobinding(io)
        return io.copy_outputs_to_cpu()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", type=Path, help="bundle directory (default: the test fixture)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=200, help="steady-state runs per mode")
    ap.add_argument("--switches", type=int, default=10, help="preference switches timed per mode")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (0 = all cores)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/binding"))
    args = ap.parse_args(argv)

    from dymu_rt.backends.onnxruntime import OnnxRuntimeBackend
    from dymu_rt.backends.devices import load_profile
    from dymu_rt.bundle.layout import verify_bundle
    from dymu_rt.runtime.binding import load_fold_params, raw_weights, slot_weights
    from dymu_rt.runtime.controller import Controller

    tmp = tempfile.TemporaryDirectory()
    bundle = args.bundle or _fixture_bundle(Path(tmp.name))
    m = verify_bundle(bundle).to_dict()
    profile = load_profile("x86-64-cpu")
    import dataclasses
    profile = dataclasses.replace(profile, threads=args.threads)

    tid, topo = max(m["topologies"].items(), key=lambda kv: kv[1]["n_points"])
    prefs = [(p["r"], p["c"]) for p in m["points"] if p["topology"] == tid]
    rng = np.random.default_rng(0)
    while len(prefs) < 2:   # weights can be bound for any deltas; the tree does not matter here
        prefs.append((list(rng.dirichlet(np.ones(len(m["tasks"])))), float(rng.uniform())))
    n_layers = len(topo["parents"])
    D = max(s["offset"] + 2 * s["channels"] for s in m["bn_layout"])
    ctrl = Controller(bundle / m["controller"]["edge_hypernet"]["file"],
                      bundle / m["controller"]["weight_hypernet"]["file"], n_layers, len(m["tasks"]), D,
                      m.get("topology_salt", ""))
    params = load_fold_params(bundle / m["controller"]["fold_params"]["file"])
    slots, eps = topo["bn_slots"], m["bn_eps"]
    h, w = m["preprocessing"]["input_size"]
    x = rng.random((args.batch, 3, h, w), dtype=np.float32)

    # Common to every mode: hypernet + fold arithmetic for one preference.
    t_weights = []
    for k in range(args.switches):
        r, c = prefs[k % len(prefs)]
        t0 = time.perf_counter()
        d = ctrl.deltas(r, c)
        slot_weights(params, m["bn_layout"], d, eps, slots, "folded")
        t_weights.append(time.perf_counter() - t0)

    graph = bundle / topo["file"]
    weights = {kind: [slot_weights(params, m["bn_layout"], ctrl.deltas(r, c), eps, slots, kind)
                      for r, c in prefs[:2]] for kind in ("folded", "affine")}
    raw = raw_weights(params, slots)
    runners, bounds, res = {}, {}, {}
    for mode in MODES:
        base = "affine" if mode.startswith("affine") else mode
        t0 = time.perf_counter()
        eng = OnnxRuntimeBackend(binding=base).load(graph, None, profile, tid, raw_weights=raw, slots=slots)
        runner = _IoRunner(eng) if mode == "affine+io" else eng
        wk = weights[eng.weight_kind]
        bounds[mode] = runner.prepare(wk[0])
        load = time.perf_counter() - t0
        sw = []
        for k in range(args.switches):
            t0 = time.perf_counter()
            bounds[mode] = runner.prepare(wk[(k + 1) % 2])
            sw.append(time.perf_counter() - t0)
        bounds[mode] = runner.prepare(wk[1])   # not the exported point: a binding that is
        runners[mode] = runner                  # silently ignored shows as an error below
        res[mode] = {"load_ms": 1e3 * load, "switch_ms": 1e3 * float(np.median(sw)), "lat": []}

    # Same preference bound in every mode -> outputs must agree (a wrong binding shows here).
    ref = runners["session"].run(x, bounds["session"])
    for mode in MODES:
        out = runners[mode].run(x, bounds[mode])
        out = out if isinstance(out, dict) else dict(zip(runners["session"].output_names, out))
        for name, v in ref.items():
            err = float(np.max(np.abs(np.asarray(out[name]) - v)) / (np.max(np.abs(v)) + 1e-12))
            res[mode]["max_rel_err"] = max(res[mode].get("max_rel_err", 0.0), err)

    rounds, per = 10, max(1, args.iters // 10)
    for mode in MODES:                      # warm-up
        for _ in range(10):
            runners[mode].run(x, bounds[mode])
    for _ in range(rounds):
        for mode in MODES:
            for _ in range(per):
                t0 = time.perf_counter()
                runners[mode].run(x, bounds[mode])
                res[mode]["lat"].append(time.perf_counter() - t0)
    for mode in MODES:
        res[mode]["latency_ms"] = 1e3 * float(np.median(res[mode].pop("lat")))
    a = res["affine"]
    for mode in MODES:
        res[mode]["latency_ratio"] = res[mode]["latency_ms"] / a["latency_ms"]
        res[mode]["switch_ratio"] = res[mode]["switch_ms"] / a["switch_ms"]
    fastest = min((m for m in MODES if not m.startswith("affine")), key=lambda m: res[m]["latency_ms"])
    dl = a["latency_ms"] - res[fastest]["latency_ms"]
    dsw = res[fastest]["switch_ms"] - a["switch_ms"]
    breakeven = dsw / dl if dl > 0 else float("inf")
    summary = {"bundle": str(args.bundle or "fixture"), "topology": tid, "slots": len(slots),
               "batch": args.batch, "threads": args.threads, "input_size": [h, w],
               "weights_ms": 1e3 * float(np.median(t_weights)), "modes": res,
               "breakeven_frames_per_switch": breakeven, "breakeven_mode": fastest}
    _report(summary, args.out)
    return 0


def _report(s: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"binding modes — topology {s['topology']} ({s['slots']} BN slots), batch {s['batch']}, "
                    f"{s['threads']} thread(s), input {s['input_size'][0]}x{s['input_size'][1]}")
    for col in ("mode", "load ms", "switch ms", "switch / affine", "latency ms", "latency / affine", "max rel err"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for mode, r in s["modes"].items():
        t.add_row(mode, f"{r['load_ms']:.1f}", f"{r['switch_ms']:.3f}", f"{r['switch_ratio']:.1f}x",
                  f"{r['latency_ms']:.3f}", f"{r['latency_ratio']:.2f}x", f"{r['max_rel_err']:.1e}")
    c = Console()
    c.print(t)
    c.print(f"weights for a preference (hypernet + fold, all modes): {s['weights_ms']:.2f} ms")
    c.print(f"break-even: '{s['breakeven_mode']}' beats 'affine' when a preference is held for more than "
            f"{s['breakeven_frames_per_switch']:.0f} frames")
    out.mkdir(parents=True, exist_ok=True)
    (out / "binding.json").write_text(json.dumps(s, indent=2) + "\n")
    _chart(s, out / "binding.png")
    c.print(f"wrote {out / 'binding.json'} and {out / 'binding.png'}")


def _chart(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(s["modes"])
    colors = ["#9e9e9e", "#ef8a17", "#2a7fb8", "#6aa84f"][: len(modes)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title, log in ((axes[0], "switch_ms", "switch cost (ms, log)", True),
                                (axes[1], "latency_ms", "steady-state latency (ms)", False),
                                (axes[2], "latency_ratio", "latency / affine", False)):
        vals = [s["modes"][m][key] for m in modes]
        bars = ax.bar(modes, vals, color=colors)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", labelrotation=15)
    axes[2].axhline(1.0, color="k", lw=0.8)
    fig.suptitle(f"ONNX Runtime binding modes, {s['bundle']} (topology {s['topology']}, batch {s['batch']}, "
                 f"{s['threads']} thread); {s['breakeven_mode']} pays off after {s['breakeven_frames_per_switch']:.0f} "
                 "frames per switch",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
