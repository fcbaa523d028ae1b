"""The hostile corpus of issue 27: every artifact a user hands us, not only bundles' paths.

A plain module (no pytest) like ``corpus.py``: the tests (``test_artifacts.py``) and the probe
(``benchmarks/probe_hostile.py``) build the same cases. Classes:

* ``unverified``: the manifest checksum deleted and the manifest edited (``bn_eps`` x1000,
  ``preprocessing.scale`` x2); every command must refuse, none may re-create the checksum;
* ``graph-content``: graph content changed and every hash resealed (an unknown op, opset 999,
  a renamed input, a deleted output, an external-data length of 10**12, a 25 GB
  ``ConstantOfShape``, an emptied ``fold_params``, the weight hypernet replaced by the edge
  hypernet, NaN weights, NaN BN statistics);
* ``run-folder``: a run's ``config.json`` / state / logs edited (wrong types, 10**12 samples,
  width x1000, a task named ``../../x``, one mean value, a wrong method, NaN, non-JSON and
  symlinked logs, NaN checkpoints);
* ``profile``: device-profile TOML (10**9 threads, 100,000-deep nesting, wrong types, sizes);
* ``threads``: ``--threads 10**9`` on ``check``, ``train``, ``compare``;
* ``calibration-images``: ``calibrate --images`` with image bombs (BMP/PPM headers, zTXt and
  iCCP bombs, a 144 Mpx PNG of a few KB);
* ``triton-repo``: a user's links inside the repository, a symlinked ``--out``, stale staging
  folders, static bundles (``export triton``, ``plot``);
* ``batch``: ``train --batch 1``.

Concurrent exports and kill -9 during build/export/calibrate/train need several processes:
:func:`concurrent_exports` and :func:`kill_during` run them and report the same outcome
fields.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from corpus import IMAGE_CASE_R, Case, _png_chunk, _reseal, _reseal_checksum, png_bytes, sha256, snapshot

CHECKSUM = "manifest.sha256.json"


# -- helpers -------------------------------------------------------------------------------------

def copy_bundle(good: Path, dest: Path) -> Path:
    shutil.copytree(good, dest, symlinks=True)
    os.chmod(dest, 0o755)
    for dp, _, fs in os.walk(dest):
        os.chmod(dp, 0o755)
        for f in fs:
            os.chmod(Path(dp) / f, 0o644)
    return dest


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _reseal_all(root: Path) -> None:
    m = _reseal(root, _manifest(root))
    (root / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    _reseal_checksum(root)


def bundle_commands(root: Path, image: Path, out: Path) -> dict[str, list[str]]:
    """The commands that open a bundle (each case gets its own copy: some write)."""
    return {
        "run": ["run", str(image), "--r", IMAGE_CASE_R, "--c", "0.5", "--bundle", str(root), "--out", str(out)],
        "check": ["check", str(root), "--points", "1", "--scenes", "1", "--threads", "1"],
        "export": ["export", "triton", str(root), "--out", str(out)],
        "profile": ["profile", "--bundle", str(root), "--iters", "1", "--warmup", "0"],
        "inspect": ["inspect", str(root), "--verify"],
        "plot": ["plot", str(root), "--out", str(out) + ".png"],
        "calibrate": ["calibrate", str(root), "--synth", "2"],
    }


# -- unverified (checksum deleted, manifest edited) ---------------------------------------------

def unverified_cases(good: Path, work: Path, image: Path, commands=None) -> list[Case]:
    cases = []
    edits = {"bn_eps_x1000": lambda m: m.__setitem__("bn_eps", m["bn_eps"] * 1000),
             "scale_x2": lambda m: m["preprocessing"].__setitem__("scale", m["preprocessing"]["scale"] * 2)}
    cmds = commands or ("run", "check", "plot", "export", "inspect", "profile", "calibrate")
    for ename, edit in edits.items():
        for cmd in cmds:
            root = copy_bundle(good, work / f"unv.{ename}.{cmd}")
            (root / CHECKSUM).unlink()
            m = _manifest(root)
            edit(m)
            (root / "manifest.json").write_text(json.dumps(m, indent=2))
            out = work / f"unv.{ename}.{cmd}.out"
            cases.append(Case(f"unverified/{ename}/{cmd}", "unverified", bundle_commands(root, image, out)[cmd],
                              bundle=str(root), out=str(out)))
            cases[-1].absent = [str(root / CHECKSUM)]
    # --allow-unverified: reading works (with a warning), writing a checksum never does
    root = copy_bundle(good, work / "unv.allowed.run")
    (root / CHECKSUM).unlink()
    out = work / "unv.allowed.run.out"
    c = Case("unverified/allowed/run", "unverified", ["--allow-unverified"] + bundle_commands(root, image, out)["run"],
             expect="ok", bundle=str(root), out=str(out))
    c.absent = [str(root / CHECKSUM)]
    c.stderr_ok = ("warning: ",)
    cases.append(c)
    root = copy_bundle(good, work / "unv.allowed.profile")
    (root / CHECKSUM).unlink()
    c = Case("unverified/allowed/profile", "unverified",
             ["--allow-unverified"] + bundle_commands(root, image, work / "x")["profile"], bundle=str(root))
    c.absent = [str(root / CHECKSUM)]
    c.stderr_ok = ("warning: ",)
    cases.append(c)
    return cases


# -- graph content (resealed) -------------------------------------------------------------------

def _edit_graph(path: Path, fn) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    fn(model)
    path.write_bytes(model.SerializeToString())


def _first_graph(root: Path) -> Path:
    m = _manifest(root)
    return root / m["topologies"][sorted(m["topologies"])[0]]["file"]


def _g_unknown_op(root):
    _edit_graph(_first_graph(root), lambda m: setattr(m.graph.node[0], "op_type", "DymuEvilOp"))


def _g_opset_999(root):
    _edit_graph(_first_graph(root), lambda m: setattr(m.opset_import[0], "version", 999))


def _g_renamed_input(root):
    def f(m):
        old = m.graph.input[0].name
        m.graph.input[0].name = "evil_input"
        for n in m.graph.node:
            for i, x in enumerate(n.input):
                if x == old:
                    n.input[i] = "evil_input"
    _edit_graph(_first_graph(root), f)


def _g_deleted_output(root):
    def f(m):
        del m.graph.output[-1]
    # every topology graph: a bundle whose graphs all lack a task (a consistent lie)
    for g in sorted((root / "graphs").glob("*.onnx")):
        _edit_graph(g, f)


def _g_external_length(root):
    def f(m):
        for init in m.graph.initializer:
            for e in init.external_data:
                if e.key == "length":
                    e.value = str(10**12)
                    return
    _edit_graph(_first_graph(root), f)


def _g_constant_of_shape(root):
    import onnx
    from onnx import TensorProto, helper

    def f(m):
        out = m.graph.output[0].name
        prod = next(n for n in m.graph.node if out in n.output)
        prod.output[list(prod.output).index(out)] = "pre_bomb"
        shape = helper.make_tensor("bomb_shape", TensorProto.INT64, [1], [25 * 2**30 // 4])
        m.graph.initializer.append(shape)
        m.graph.node.extend([
            helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"]),
            helper.make_node("ReduceSum", ["bomb"], ["bomb_sum"], keepdims=0),
            helper.make_node("Add", ["pre_bomb", "bomb_sum"], [out]),
        ])
    del onnx
    _edit_graph(_first_graph(root), f)


def _g_empty_fold(root):
    from dymu_rt.core.safetensors_np import dumps

    (root / "controller" / "fold_params.safetensors").write_bytes(dumps({}))


def _g_swapped_hypernet(root):
    shutil.copy2(root / "controller" / "edge_hypernet.onnx", root / "controller" / "weight_hypernet.onnx")


def _g_nan_weights(root):
    p = root / "graphs" / "weights.bin"
    data = bytearray(p.read_bytes())
    nan = struct.pack("<f", float("nan"))
    for off in range(0, min(len(data), 4096), 4):
        data[off:off + 4] = nan
    p.write_bytes(bytes(data))


def _g_nan_bn_stats(root):
    from dymu_rt.core.safetensors_np import dumps, load

    p = root / "controller" / "fold_params.safetensors"
    fold = load(p)
    key = sorted(k for k in fold if k.endswith(".bn_var"))[0]
    fold[key] = np.full_like(fold[key], np.nan)
    p.write_bytes(dumps(fold))


GRAPH_MUTATIONS = {
    "unknown_op": _g_unknown_op, "opset_999": _g_opset_999, "renamed_input": _g_renamed_input,
    "deleted_output": _g_deleted_output, "external_length_1e12": _g_external_length,
    "constant_of_shape_25GB": _g_constant_of_shape, "empty_fold_params": _g_empty_fold,
    "weight_hypernet_is_edge": _g_swapped_hypernet, "nan_weights": _g_nan_weights, "nan_bn_stats": _g_nan_bn_stats,
}


def graph_content_cases(good: Path, work: Path, image: Path,
                        commands=("run", "check", "export", "profile", "inspect")) -> list[Case]:
    cases = []
    for name, mutate in GRAPH_MUTATIONS.items():
        for cmd in commands:
            root = copy_bundle(good, work / f"graph.{name}.{cmd}")
            mutate(root)
            _reseal_all(root)
            out = work / f"graph.{name}.{cmd}.out"
            cases.append(Case(f"graph/{name}/{cmd}", "graph-content", bundle_commands(root, image, out)[cmd],
                              bundle=str(root), out=str(out)))
    return cases


# -- run folders --------------------------------------------------------------------------------

def _cfg_edit(path_keys, value):
    def f(cfg):
        node = cfg
        for k in path_keys[:-1]:
            node = node[k] if not isinstance(node, list) else node[int(k)]
        node[path_keys[-1]] = value
    return f


RUN_EDITS = {
    "data_5": _cfg_edit(("data",), 5),
    "seed_string": _cfg_edit(("data_options",), {"seed": "x", "n_train": 4, "n_val": 2}),
    "n_train_1e12": _cfg_edit(("data_options",), {"seed": 0, "n_train": 10**12, "n_val": 2}),
    "lr_string": _cfg_edit(("preset", "train", "anchor_lr"), "ab"),
    "width_mult_1000": _cfg_edit(("preset", "backbone", "width_mult"), 1000),
    "task_name_traversal": _cfg_edit(("preset", "tasks", "0", "name"), "../../x"),
    "mean_one_value": _cfg_edit(("preset", "mean"), [0.5]),
    "method_mismatch": _cfg_edit(("method",), "adashare"),
    "input_size_huge": _cfg_edit(("preset", "input_size"), [60000, 60000]),
}


def run_folder_cases(run_dir: Path, work: Path, commands=("inspect", "build", "eval", "train")) -> list[Case]:
    cases = []

    def argv(cmd, d):
        return {"inspect": ["inspect", str(d)],
                "build": ["build", str(d), "--grid", "0.5", "--out", str(d) + ".bundle"],
                "eval": ["eval", str(d), "--grid", "0.5", "--n-val", "2"],
                "train": ["train", "--out", str(d), "--quiet", "--threads", "1"]}[cmd]

    for name, edit in RUN_EDITS.items():
        for cmd in commands:
            d = work / f"run.{name}.{cmd}"
            shutil.copytree(run_dir, d)
            cfg = json.loads((d / "config.json").read_text())
            edit(cfg)
            (d / "config.json").write_text(json.dumps(cfg))
            cases.append(Case(f"run/{name}/{cmd}", "run-folder", argv(cmd, d), bundle=str(d),
                              out=str(d) + ".bundle"))
    # NaN in JSON numbers (a literal NaN and an overflowing 1e400)
    for name, text in (("nan_literal", "NaN"), ("inf_1e400", "1e400")):
        for cmd in ("inspect", "build"):
            d = work / f"run.{name}.{cmd}"
            shutil.copytree(run_dir, d)
            raw = (d / "config.json").read_text().replace('"width_mult": 0.125', f'"width_mult": {text}')
            (d / "config.json").write_text(raw)
            cases.append(Case(f"run/{name}/{cmd}", "run-folder", argv(cmd, d), bundle=str(d), out=str(d) + ".bundle"))
    # NaN checkpoint: build refuses
    from safetensors.numpy import load_file, save_file

    d = work / "run.nan_anchor.build"
    shutil.copytree(run_dir, d)
    t = load_file(str(d / "anchor.safetensors"))
    k = sorted(k for k in t if t[k].dtype.kind == "f")[0]
    t[k] = np.full_like(t[k], np.nan)
    save_file(t, str(d / "anchor.safetensors"))
    cases.append(Case("run/nan_anchor/build", "run-folder", argv("build", d), bundle=str(d), out=str(d) + ".bundle"))
    # NaN training state: resume refuses
    d = work / "run.nan_state.train"
    shutil.copytree(run_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["stages"]["anchor"] = {"done": False}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "state").mkdir()
    t = {("model." + k): v for k, v in load_file(str(d / "anchor.safetensors")).items()}
    k = sorted(k for k in t if t[k].dtype.kind == "f")[0]
    t[k] = np.full_like(t[k], np.nan)
    save_file(t, str(d / "state" / "anchor.step1.safetensors"))
    (d / "state" / "anchor.json").write_text(json.dumps({"step": 1, "optimizer": {"param_groups": [], "scalars": {}},
                                                          "tensors": "anchor.step1.safetensors"}))
    cases.append(Case("run/nan_state/train", "run-folder",
                      ["train", "--out", str(d), "--quiet", "--threads", "1", "--n-train", "4", "--n-val", "2",
                       "--anchor-steps", "2", "--edge-steps", "1", "--weight-steps", "1"], bundle=str(d)))
    # logs: non-JSON lines are kept; a log that is a link to a file outside is refused
    for name in ("log_garbage", "log_symlink"):
        outside = work / f"run.outside.{name}"       # one per case: a snapshot reads it (atime)
        outside.mkdir(exist_ok=True)
        secret = outside / "secret.jsonl"
        secret.write_text('{"step": 99, "secret": true}\n')
        d = work / f"run.{name}.train"
        shutil.copytree(run_dir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["stages"]["weight"] = {"done": False}
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "logs").mkdir(exist_ok=True)
        if name == "log_garbage":
            (d / "logs" / "weight.jsonl").write_text('{"step": 1}\nnot json at all\n[1, 2]\n{"step": "x"}\n')
            expect = "any"
        else:
            (d / "logs" / "weight.jsonl").symlink_to(secret)
            expect = "error"
        c = Case(f"run/{name}/train", "run-folder",
                 ["train", "--out", str(d), "--quiet", "--threads", "1", "--n-train", "4", "--n-val", "2",
                  "--weight-steps", "1"], expect=expect, bundle=str(d), watch=[str(outside)],
                 check_intact={"folder": str(outside), "files": snapshot(outside)})
        cases.append(c)
    return cases


# -- device profiles and thread counts -----------------------------------------------------------

PROFILES = {
    "threads_1e9": 'name = "p"\nbackend = "onnxruntime"\nthreads = 1000000000\n',
    "threads_negative": 'name = "p"\nbackend = "onnxruntime"\nthreads = -1\n',
    "threads_string": 'name = "p"\nbackend = "onnxruntime"\nthreads = "x"\n',
    "deep_100000": 'name = "p"\nbackend = "onnxruntime"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep_tables": 'name = "p"\nbackend = "onnxruntime"\nx = ' + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    "batch_max_1e9": 'name = "p"\nbackend = "onnxruntime"\n[input]\nbatch_max = 1000000000\n',
    "engine_cache_1e12": 'name = "p"\nbackend = "onnxruntime"\n[memory]\nengine_cache_mb = 1000000000000\n',
    "name_traversal": 'name = "../../x"\nbackend = "onnxruntime"\n',
    "not_toml": "this is [not toml\n",
}


def profile_cases(good: Path, work: Path, image: Path) -> list[Case]:
    cases = []
    folder = work / "profiles"
    folder.mkdir(exist_ok=True)
    for name, text in PROFILES.items():
        p = folder / f"{name}.toml"
        p.write_text(text)
        for cmd in ("run", "profile"):
            root = copy_bundle(good, work / f"prof.{name}.{cmd}")
            out = work / f"prof.{name}.{cmd}.out"
            argv = (["run", str(image), "--r", IMAGE_CASE_R, "--c", "0.5", "--bundle", str(root), "--out", str(out),
                     "--profile", str(p)] if cmd == "run" else
                    ["profile", "--bundle", str(root), "--profile", str(p), "--iters", "1", "--warmup", "0"])
            cases.append(Case(f"profile/{name}/{cmd}", "profile", argv, bundle=str(root), out=str(out)))
    return cases


def thread_cases(good: Path, work: Path, run_dir: Path) -> list[Case]:
    big = str(10**9)
    root = copy_bundle(good, work / "threads.bundle")
    new_run = work / "threads.newrun"
    cases = [
        Case("threads/check_1e9", "threads", ["check", str(root), "--threads", big], bundle=str(root)),
        Case("threads/check_negative", "threads", ["check", str(root), "--threads", "-3"], bundle=str(root)),
        Case("threads/train_1e9", "threads", ["train", "--out", str(new_run), "--threads", big, "--quiet"],
             out=str(new_run)),
        Case("threads/compare_1e9", "threads", ["compare", str(run_dir), "--threads", big]),
    ]
    cases[2].absent = [str(new_run)]          # no half-made run left behind
    return cases


def batch_cases(work: Path) -> list[Case]:
    out = work / "batch1.run"
    c = Case("batch/nyuv2_batch_1", "batch", ["train", "--preset", "nyuv2", "--batch", "1", "--out", str(out),
                                              "--quiet", "--threads", "1"], out=str(out))
    c.absent = [str(out)]
    return [c]


# -- calibration images ---------------------------------------------------------------------------

def _bmp_header(w: int, h: int) -> bytes:
    row = (w * 3 + 3) & ~3
    size = 54 + row * h
    return (b"BM" + struct.pack("<IHHI", size & 0xFFFFFFFF, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0) + b"\x00" * 64)


def _png_text_bomb(kind: bytes) -> bytes:
    """A 64x64 PNG with a compressed chunk (zTXt or iCCP) that inflates to 256 MiB of zeros (PIL allows 1 MiB)."""
    comp = zlib.compressobj(9)
    block = bytes(1 << 20)
    body = b"".join(comp.compress(block) for _ in range(256)) + comp.flush()
    payload = (b"Comment\x00\x00" if kind == b"zTXt" else b"icc\x00\x00") + body
    good = png_bytes(64, 64)
    return good[:33] + _png_chunk(kind, payload) + good[33:]


def calibration_image_files(folder: Path) -> dict[str, Path]:
    from corpus import image_bombs

    folder.mkdir(parents=True, exist_ok=True)
    made = {"bmp_900Mpx_header": (".bmp", _bmp_header(30000, 30000)),
            "ppm_3.6Gpx_header": (".ppm", b"P6\n60000 60000\n255\n" + bytes(1024)),
            "png_ztxt_bomb": (".png", _png_text_bomb(b"zTXt")),
            "png_iccp_bomb": (".png", _png_text_bomb(b"iCCP"))}
    out = {}
    for name, (suffix, data) in made.items():
        p = folder / f"{name}{suffix}"
        p.write_bytes(data)
        out[name] = p
    for name, p in image_bombs(folder / "bombs").items():
        if not name.startswith(("tall", "wide")):
            out[name] = p
    return out


def calibration_image_cases(good: Path, work: Path) -> list[Case]:
    cases = []
    for name, path in calibration_image_files(work / "calimg").items():
        d = work / f"calimg.set.{name}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, d / path.name)
        root = copy_bundle(good, work / f"calimg.{name}")
        cases.append(Case(f"calibration-images/{name}", "calibration-images",
                          ["calibrate", str(root), "--images", str(d)], bundle=str(root), memory_limit=True))
    return cases


# -- Triton repositories and static bundles ---------------------------------------------------------

def make_adashare_run(path: Path) -> Path:
    """A finished AdaShare run of the tiny preset (random weights; what tests/methods builds)."""
    import torch

    from dymu_rt.models.adashare import AdaShareNet, lower_policy
    from dymu_rt.run.layout import STATIC_STAGES, RunDir
    from dymu_rt.methods import get_method
    from dymu_rt.training.static_run import save_result
    from run_fixture import randomize_bn, tiny_preset

    preset = tiny_preset()
    run = RunDir(path)
    run.init(preset, data="synth", extra=get_method("adashare").new_run_extra(preset, {}, None))
    torch.manual_seed(1)
    net = AdaShareNet(preset).eval()
    randomize_bn(net, torch.Generator().manual_seed(2))
    policy = np.ones((net.num_blocks, len(preset.tasks)), dtype=int)
    policy[1, 0] = policy[2, 1] = 0
    save_result(run, net, lower_policy(net, policy), {"policy": policy.tolist()})
    for s in STATIC_STAGES:
        run.mark_done(s, {"step": 0, "fixture": True})
    return path


def export_once(bundle: Path, repo: Path, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "dymu_rt.cli.main", "export", "triton", str(bundle), "--out", str(repo),
                    *extra], check=True, capture_output=True, env=env)


def triton_repo_cases(good: Path, work: Path, static_bundle: Path | None = None) -> list[Case]:
    cases = []

    def outside_for(name: str) -> Path:
        # one per case: the probe runs cases in parallel and a snapshot reads the files (atime)
        o = work / f"triton.outside.{name}"
        (o / "dir").mkdir(parents=True, exist_ok=True)
        (o / "secret.txt").write_text("a user's file\n")
        (o / "dir" / "mine.txt").write_text("mine\n")
        return o

    base = work / "triton.base"
    export_once(good, base)

    def repo(name: str) -> Path:
        r = work / f"triton.{name}"
        shutil.copytree(base, r, symlinks=True)
        return r

    # a link to a file inside the repository: kept as a link, never copied or written through
    r = repo("file_link")
    outside = outside_for("file_link")
    (r / "notes.txt").symlink_to(outside / "secret.txt")
    c = Case("triton/user_file_link", "triton-repo", ["export", "triton", str(good), "--out", str(r),
                                                       "--max-batch", "4"], expect="any", bundle=str(r), out=str(r),
             watch=[str(outside)], check_intact={"folder": str(outside), "files": snapshot(outside)})
    c.links = [str(r / "notes.txt")]
    cases.append(c)
    # a link to a folder inside the repository
    r = repo("dir_link")
    outside = outside_for("dir_link")
    (r / "mine").symlink_to(outside / "dir")
    c = Case("triton/user_dir_link", "triton-repo", ["export", "triton", str(good), "--out", str(r),
                                                      "--max-batch", "4"], expect="any", bundle=str(r), out=str(r),
             watch=[str(outside)], check_intact={"folder": str(outside), "files": snapshot(outside)})
    c.links = [str(r / "mine")]
    cases.append(c)
    # --out is a link to the repository: it stays a link
    r = repo("linked_target")
    link = work / "triton.out_link"
    link.symlink_to(r)
    c = Case("triton/out_is_link", "triton-repo", ["export", "triton", str(good), "--out", str(link),
                                                    "--max-batch", "4"], expect="ok", bundle=str(r), out=str(r))
    c.links = [str(link)]
    cases.append(c)
    # --out a dangling link
    dangling = work / "triton.dangling"
    dangling.symlink_to(work / "triton.nowhere")
    cases.append(Case("triton/out_dangling_link", "triton-repo", ["export", "triton", str(good), "--out",
                                                                   str(dangling)]))
    # staging folders of a killed export (a dead PID) are cleaned by the next export
    r = repo("stale")
    dead = _dead_pid()
    stale = work / f".triton.stale.tmp-{dead}"
    shutil.copytree(base, stale)
    old = work / f".triton.stale.old-{dead}"
    old.mkdir()
    c = Case("triton/stale_staging", "triton-repo", ["export", "triton", str(good), "--out", str(r), "--max-batch",
                                                      "4"], expect="ok", bundle=str(r), out=str(r))
    c.absent = [str(stale), str(old)]
    cases.append(c)
    if static_bundle is not None:
        cases.append(Case("static/export_triton", "static-bundle", ["export", "triton", str(static_bundle), "--out",
                                                                    str(work / "triton.static")],
                          bundle=str(static_bundle), out=str(work / "triton.static")))
        cases[-1].expect = "any"
        cases.append(Case("static/plot", "static-bundle", ["plot", str(static_bundle), "--out",
                                                           str(work / "static.png")],
                          bundle=str(static_bundle), out=str(work / "static.png"), expect="any"))
    return cases


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- several processes: concurrent exports, kill -9 -------------------------------------------------

def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dymu_rt.cli.main", *args]


def _result(name: str, category: str, ok: bool, tracebacks: int = 0, lost: list | None = None,
            accepted: bool = False, detail: str = "") -> dict:
    return {"name": name, "category": category, "expect": "ok", "code": 0 if ok else 1, "seconds": 0.0,
            "one_line_error": False, "traceback": tracebacks > 0, "hang": False, "accepted_hostile": accepted,
            "reads_outside": [], "writes_outside": [], "files_lost": lost or [], "peak_rss_bytes": None,
            "passed": bool(ok and not tracebacks and not lost and not accepted), "stderr_tail": detail[-600:]}


def concurrent_exports(good: Path, work: Path, n: int = 2) -> dict:
    """``n`` exports of one bundle (different --max-batch) into one repository at once: each
    exits 0 with its own version, the repository holds all of them and passes its check."""
    repo = work / "conc.repo"
    procs = [subprocess.Popen(_cli("export", "triton", str(good), "--out", str(repo), "--max-batch", str(2 + i),
                                   "--json"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    outs = [p.communicate(timeout=600) for p in procs]
    versions = []
    for o, _ in outs:
        try:
            versions.append(json.loads(o)["version"])
        except (ValueError, KeyError):
            versions.append(None)
    from dymu_rt.serve.triton.repository_check import check_repository

    try:
        problems = check_repository(repo)
    except Exception as e:  # noqa: BLE001 - tritonclient missing: structural check only
        problems = [] if type(e).__name__ == "BackendUnavailable" else [str(e)]
    router = sorted(int(p.name) for p in (repo / "dymu").iterdir() if p.is_dir()) if (repo / "dymu").is_dir() else []
    ok = (all(p.returncode == 0 for p in procs) and len(set(versions)) == n and None not in versions
          and sorted(versions) == router[-n:] and not problems)
    tb = sum("Traceback" in e for _, e in outs)
    lost = [] if ok else [f"versions {versions}, router holds {router}, problems {problems[:2]}"]
    return _result("concurrent/export_triton_x2", "concurrent-export", ok, tb, lost,
                   detail=" | ".join(e.strip()[-200:] for _, e in outs))


def kill_during(kind: str, work: Path, good: Path, run_dir: Path, delay: float) -> dict:
    """Start a writer, kill -9 it after ``delay`` s, then check the artifact it was replacing is
    still whole (``inspect --verify`` of a bundle, ``check_repository`` of a repository, a
    run's config readable) and a re-run succeeds."""
    env = _env()
    if kind == "build":
        target = work / "kill.build.bundle"
        subprocess.run(_cli("build", str(run_dir), "--grid", "0.5", "--out", str(target)), env=env, check=True,
                       capture_output=True)
        argv = _cli("build", str(run_dir), "--grid", "0.25", "--out", str(target))
        verify = _cli("inspect", str(target), "--verify")
    elif kind == "export":
        target = work / "kill.export.repo"
        export_once(good, target)
        argv = _cli("export", "triton", str(good), "--out", str(target), "--max-batch", "3")
        verify = None
    elif kind == "calibrate":
        target = copy_bundle(good, work / "kill.calibrate.bundle")
        argv = _cli("calibrate", str(target), "--synth", "16")
        verify = _cli("inspect", str(target), "--verify")
    else:  # train
        target = work / "kill.train.run"
        argv = _cli("train", "--out", str(target), "--preset", "synth-nyu", "--n-train", "8", "--n-val", "2",
                    "--anchor-steps", "50", "--edge-steps", "1", "--weight-steps", "1", "--batch", "2", "--quiet",
                    "--threads", "1", "--save-every", "2")
        verify = _cli("inspect", str(target))
    before = snapshot(target) if target.is_dir() else {}
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(delay)
    killed = p.poll() is None
    if killed:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    lost, tb, detail = [], 0, f"killed={killed}"
    if kind == "export":
        from dymu_rt.serve.triton.export import _existing

        try:
            top, spec = _existing(target)
            if spec is None or top < 1:
                lost.append("repository lost its router")
        except Exception as e:  # noqa: BLE001
            lost.append(f"repository unreadable: {e}")
    elif verify is not None and (kind != "train" or target.exists()):
        v = subprocess.run(verify, env=env, capture_output=True, text=True)
        if v.returncode != 0:
            lost.append(f"{kind}: {target.name} not usable after kill -9: {v.stderr.strip()[-200:]}")
        tb += "Traceback" in v.stderr
    # a re-run completes (resumes, or cleans the killed run's staging)
    if kind == "train":
        rerun = argv[:]
        i = rerun.index("--anchor-steps")
        rerun[i + 1] = "4"
    else:
        rerun = argv
    r = subprocess.run(rerun, env=env, capture_output=True, text=True, timeout=900)
    tb += "Traceback" in r.stderr
    if r.returncode != 0:
        lost.append(f"re-run after kill failed: {r.stderr.strip()[-200:]}")
    leftovers = [p.name for p in target.parent.iterdir()
                 if p.name.startswith(f".{target.name}.") and (".tmp-" in p.name or ".build-" in p.name
                                                                or ".old-" in p.name)]
    if leftovers:
        lost.append(f"staging left behind: {leftovers}")
    del before
    return _result(f"kill9/{kind}", "kill-9", not lost, tb, lost, detail=detail + " " + r.stderr[-200:])
