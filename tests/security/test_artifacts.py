"""Issue 27: every artifact a user hands us is untrusted (corpus: corpus_artifacts.py).

Each case runs ``dymu-rt`` in this process under the audit hook (conftest.py) and must end
in one ``error:`` line (or succeed where that is fine), open nothing outside, write nothing
outside, lose no user file, and never re-create a checksum over an edit. The full corpus
(every command per case, concurrent exports, kill -9 during build/export/calibrate/train)
runs in ``benchmarks/probe_hostile.py``; these are a representative slice of each class.
Cost: 111 s wall, 68 s CPU measured on a shared 2-core machine (most cases are refused before a
session opens; the export, concurrency and kill cases start subprocesses).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
import corpus_artifacts as A
from corpus import IMAGE_CASE_R, snapshot

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))


def _one_line_error(code: int, err: str, allow=("warning: ",)) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(allow)]
    return code != 0 and len(lines) == 1 and lines[0].startswith("error: ")


def _staging_ok(written, roots) -> list:
    """Writes outside the allowed folders, less a writer's staging beside them (.R.*)."""
    bad = []
    for w in written:
        if "/torchinductor_" in w:          # torch's compile cache (TMPDIR), not ours
            continue
        if not any(w.startswith(f"{os.path.dirname(os.path.realpath(r))}/.{os.path.basename(os.path.realpath(r))}.")
                   for r in roots):
            bad.append(w)
    return bad


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from run_fixture import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")


# -- integrity that cannot be laundered -------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["run", "plot", "export", "inspect", "profile", "calibrate"])
def test_unverified_edited_bundle_is_refused_and_never_resealed(cmd, good_bundle, good_image, tmp_path, capsys,
                                                                audit):
    (case,) = [c for c in A.unverified_cases(good_bundle, tmp_path, good_image, commands=(cmd,))
               if c.name == f"unverified/bn_eps_x1000/{cmd}"]
    with audit(watch=[], allow=[case.bundle, case.out]) as rec:
        code, _, err = run_cli(capsys, *case.argv)
    assert _one_line_error(code, err), (code, err)
    assert "manifest.sha256.json" in err
    assert not any(os.path.lexists(p) for p in case.absent), "a checksum was re-created over an edited manifest"
    assert _staging_ok(rec["written"], [case.bundle, case.out]) == []


def test_allow_unverified_reads_with_a_warning_but_never_seals(good_bundle, good_image, tmp_path, capsys):
    cases = {c.name: c for c in A.unverified_cases(good_bundle, tmp_path, good_image, commands=("run",))}
    run, prof = cases["unverified/allowed/run"], cases["unverified/allowed/profile"]
    code, _, err = run_cli(capsys, *run.argv)
    assert code == 0 and "warning: bundle" in err and "UNVERIFIED" in err, err
    code, _, err = run_cli(capsys, *prof.argv)
    assert _one_line_error(code, err) and "refusing to write a checksum" in err, (code, err)
    assert not os.path.lexists(Path(prof.bundle) / "manifest.sha256.json")


@pytest.mark.parametrize("name", sorted(A.GRAPH_MUTATIONS))
def test_graph_content_is_checked_before_a_session_opens(name, good_bundle, good_image, tmp_path, capsys):
    root = A.copy_bundle(good_bundle, tmp_path / "b")
    A.GRAPH_MUTATIONS[name](root)
    A._reseal_all(root)
    code, _, err = run_cli(capsys, "inspect", str(root), "--verify")
    assert _one_line_error(code, err), (code, err)


@pytest.mark.parametrize("name,cmd", [("deleted_output", "export"), ("weight_hypernet_is_edge", "export"),
                                      ("constant_of_shape_25GB", "run"), ("external_length_1e12", "run")])
def test_graph_content_refused_by_export_and_run(name, cmd, good_bundle, good_image, tmp_path, capsys, audit):
    mutate = A.GRAPH_MUTATIONS[name]
    root = A.copy_bundle(good_bundle, tmp_path / "b")
    mutate(root)
    A._reseal_all(root)
    out = tmp_path / "out"
    with audit(watch=[], allow=[root, out]) as rec:
        code, _, err = run_cli(capsys, *A.bundle_commands(root, good_image, out)[cmd])
    assert _one_line_error(code, err), (code, err)
    assert not out.exists() or not any(out.iterdir()), "a refused export/run wrote its output"
    assert _staging_ok(rec["written"], [root, out]) == []


# -- run folders, profiles, threads, batch ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(A.RUN_EDITS))
def test_edited_run_config_is_one_line(name, tiny_run, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    cfg = json.loads((d / "config.json").read_text())
    A.RUN_EDITS[name](cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    for argv in (["inspect", str(d)], ["build", str(d), "--grid", "0.5", "--out", str(tmp_path / "b")]):
        code, _, err = run_cli(capsys, *argv)
        assert _one_line_error(code, err), (argv[0], code, err)
    assert not (tmp_path / "b").exists() or not (tmp_path / "b" / "manifest.json").exists()


def test_nan_in_run_json_and_checkpoints_is_refused(tiny_run, tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    d = tmp_path / "run"
    shutil.copytree(tiny_run, d)
    raw = (d / "config.json").read_text()
    (d / "config.json").write_text(raw.replace('"width_mult": 0.125', '"width_mult": NaN'))
    code, _, err = run_cli(capsys, "inspect", str(d))
    assert _one_line_error(code, err) and "non-finite" in err, err
    (d / "config.json").write_text(raw)
    t = load_file(str(d / "anchor.safetensors"))
    k = sorted(k for k in t if t[k].dtype.kind == "f")[0]
    t[k][...] = float("nan")
    save_file(t, str(d / "anchor.safetensors"))
    code, _, err = run_cli(capsys, "build", str(d), "--grid", "0.5", "--out", str(tmp_path / "b"))
    assert _one_line_error(code, err) and "NaN" in err, err


def test_log_symlink_is_refused_and_outside_untouched(tiny_run, tmp_path, capsys, audit):
    cases = [c for c in A.run_folder_cases(tiny_run, tmp_path, commands=()) if c.name == "run/log_symlink/train"]
    (case,) = cases
    outside = Path(case.watch[0])
    before = snapshot(outside)
    with audit(watch=[outside], allow=[case.bundle]) as rec:
        code, _, err = run_cli(capsys, *case.argv)
    assert _one_line_error(code, err), (code, err)
    assert rec["opened"] == [] and _staging_ok(rec["written"], [case.bundle]) == [], rec
    assert snapshot(outside) == before


@pytest.mark.parametrize("name", sorted(A.PROFILES))
def test_hostile_profile_is_one_line(name, good_bundle, tmp_path, capsys):
    p = tmp_path / f"{name}.toml"
    p.write_text(A.PROFILES[name])
    code, _, err = run_cli(capsys, "profile", "--bundle", str(good_bundle), "--profile", str(p), "--iters", "1")
    assert _one_line_error(code, err), (code, err)


def test_threads_beyond_the_machine_are_refused(good_bundle, tiny_run, tmp_path, capsys):
    for argv in (["check", str(good_bundle), "--threads", str(10**9)],
                 ["train", "--out", str(tmp_path / "new"), "--threads", str(10**9), "--quiet"],
                 ["compare", str(tiny_run), "--threads", str(10**9)]):
        code, _, err = run_cli(capsys, *argv)
        assert _one_line_error(code, err) and "--threads" in err, (argv[0], err)
    assert not (tmp_path / "new").exists(), "a refused train left a half-made run"


def test_batch_1_where_batchnorm_trains_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--preset", "nyuv2", "--batch", "1", "--out", str(tmp_path / "r"),
                           "--quiet")
    assert _one_line_error(code, err) and "--batch 1" in err, (code, err)
    assert not (tmp_path / "r").exists()


# -- calibration images ---------------------------------------------------------------------------

def test_calibrate_shares_runs_image_guard(good_bundle, tmp_path, capsys):
    files = A.calibration_image_files(tmp_path / "imgs")
    root = A.copy_bundle(good_bundle, tmp_path / "b")
    for name, path in files.items():
        d = tmp_path / f"set.{name}"
        d.mkdir()
        shutil.copy2(path, d / path.name)
        code, _, err = run_cli(capsys, "calibrate", str(root), "--images", str(d))
        assert _one_line_error(code, err), (name, code, err)


# -- Triton repositories, static bundles, concurrency, kill -9 --------------------------------------

def test_triton_repository_links_staging_and_static(good_bundle, tmp_path, capsys, audit):
    static_run = A.make_adashare_run(tmp_path / "ada.run")
    static_bundle = tmp_path / "static.bundle"
    code, _, err = run_cli(capsys, "build", str(static_run), "--out", str(static_bundle))
    assert code == 0, err
    for case in A.triton_repo_cases(good_bundle, tmp_path, static_bundle):
        outside = [w for w in case.watch]
        with audit(watch=outside, allow=[p for p in (case.bundle, case.out) if p]) as rec:
            code, _, err = run_cli(capsys, *case.argv)
        ok = (code == 0) if case.expect == "ok" else _one_line_error(code, err) if case.expect == "error" else (
            code == 0 or _one_line_error(code, err))
        assert ok, (case.name, code, err)
        assert "Traceback" not in err
        assert rec["opened"] == [] and rec["read_by_any"] == [], (case.name, rec)
        assert _staging_ok(rec["written"], [p for p in (case.bundle, case.out) if p]) == [], (case.name, rec)
        assert all(os.path.islink(p) for p in case.links), (case.name, "a user's link was replaced")
        assert not any(os.path.lexists(p) for p in case.absent), (case.name, "stale staging left")
        if case.check_intact:
            assert snapshot(Path(case.check_intact["folder"])) == case.check_intact["files"], case.name


def test_two_exports_into_one_repository_both_land(good_bundle, tmp_path):
    res = A.concurrent_exports(good_bundle, tmp_path)
    assert res["passed"], res


@pytest.mark.slow
def test_kill_9_during_build_keeps_the_old_bundle(good_bundle, tiny_run, tmp_path):
    """~25 s: build over a bundle, kill -9 mid-build; the old bundle still verifies, a re-run completes."""
    res = A.kill_during("build", tmp_path, good_bundle, tiny_run, 2.5)
    assert res["passed"], res


def test_kill_9_during_export_keeps_the_repository(good_bundle, tiny_run, tmp_path):
    res = A.kill_during("export", tmp_path, good_bundle, tiny_run, 1.5)
    assert res["passed"], res


def test_every_shipped_preset_passes_the_run_schema():
    """The run-folder door must let every real run through (stored as JSON: lists, not tuples)."""
    from dymu_rt.models.presets import PRESETS, get_preset
    from dymu_rt.run.schema import validate_run_config

    for name in PRESETS:
        cfg = {"kind": "dymu-rt-run", "data": "synth", "stages": {"anchor": {"done": False}},
               "preset": json.loads(json.dumps(get_preset(name).to_dict()))}
        validate_run_config(cfg, f"<{name}>")
