"""Hostile and broken bundles: each is refused with one line, and nothing outside it is
opened or written (audit hook + access times; see conftest.py).

The corpus (``corpus.py``) changes one thing of a good bundle per case: traversal and
absolute paths, symlinks, ONNX external data that leaves the graphs folder, wrong types,
200,000-deep nesting, edited values, truncated and bit-flipped files.
"""

from __future__ import annotations

import pytest

from cli_helpers import run_cli
from corpus import IMAGE_CASE_R, MUTATION_NAMES, hostile_bundle


def _one_line_error(code: int, err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return code != 0 and len(lines) == 1 and lines[0].startswith("error: ")


@pytest.mark.parametrize("name", MUTATION_NAMES)
def test_run_refuses_hostile_bundle(name, good_bundle, good_image, tmp_path, capsys, audit):
    outside = tmp_path / "outside"
    _, root = hostile_bundle(good_bundle, tmp_path / "bundle", outside, name)
    out = tmp_path / "out"
    with audit(watch=[outside, "/etc/passwd", "/tmp/dymu-outside-x"], allow=[root, out]) as rec:
        code, _, err = run_cli(capsys, "run", str(good_image), "--r", IMAGE_CASE_R, "--c", "0.5",
                               "--bundle", str(root), "--out", str(out))
    assert _one_line_error(code, err), (code, err)
    assert rec["opened"] == [] and rec["read_by_any"] == [], rec
    assert rec["written"] == [], rec["written"]
    assert not out.exists() or not any(out.iterdir()), "a refused run wrote outputs"


@pytest.mark.parametrize("name", [n for n in MUTATION_NAMES if n.startswith(("edited", "bitflip", "truncated"))
                                  or "traversal" in n or "symlink" in n])
def test_inspect_verify_refuses(name, good_bundle, tmp_path, capsys, audit):
    outside = tmp_path / "outside"
    _, root = hostile_bundle(good_bundle, tmp_path / "bundle", outside, name)
    with audit(watch=[outside, "/etc/passwd"], allow=[root]) as rec:
        code, _, err = run_cli(capsys, "inspect", str(root), "--verify")
    assert _one_line_error(code, err), (code, err)
    assert rec["opened"] == [] and rec["read_by_any"] == [] and rec["written"] == [], rec


@pytest.mark.parametrize("cmd", ["profile", "calibrate"])
def test_topology_id_traversal_writes_nothing_outside(cmd, good_bundle, tmp_path, capsys, audit):
    outside = tmp_path / "outside"
    _, root = hostile_bundle(good_bundle, tmp_path / "bundle", outside, "topology_id_traversal")
    argv = (["profile", "--bundle", str(root), "--iters", "1", "--warmup", "0"] if cmd == "profile"
            else ["calibrate", str(root), "--synth", "2"])
    with audit(watch=[outside], allow=[root]) as rec:
        code, _, err = run_cli(capsys, *argv)
    assert _one_line_error(code, err), (code, err)
    assert rec["written"] == [] and rec["opened"] == [], rec
    assert not outside.exists() or not any(outside.rglob("*")), list(outside.rglob("*"))


def test_good_bundle_still_runs(good_bundle, good_image, tmp_path, capsys, audit):
    """The audit itself: a good bundle runs, and its reads and writes stay inside."""
    out = tmp_path / "out"
    with audit(watch=[tmp_path / "outside"], allow=[good_bundle, out]) as rec:
        code, _, err = run_cli(capsys, "run", str(good_image), "--r", IMAGE_CASE_R, "--c", "0.5",
                               "--bundle", str(good_bundle), "--out", str(out))
    assert code == 0, err
    assert rec["written"] == [], rec["written"]
    assert sorted(p.name for p in out.iterdir())
