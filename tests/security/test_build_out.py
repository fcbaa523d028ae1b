"""``build --out`` never destroys what it did not write (issue 16, item 1).

A folder with a ``manifest.json`` (of another tool, garbage, or one that claims to be a
dymu-rt bundle) and other files is refused, naming it, and every file is still there byte
for byte; a real bundle with a user's files added keeps those files across a rebuild.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from corpus import snapshot

sys.path.insert(0, str(Path(__file__).parents[1] / "compile"))
from run_fixture import make_tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run") / "run")


def _user_folder(d: Path, manifest) -> Path:
    (d / "graphs").mkdir(parents=True)
    (d / "engines" / "mine").mkdir(parents=True)
    (d / "thesis.tex").write_text("years of work\n")
    (d / "graphs" / "plot.png").write_bytes(b"\x89PNG not really")
    (d / "engines" / "mine" / "model.onnx").write_bytes(b"my model")
    (d / ".notes.abcdefgh.tmp").write_text("looks like a temporary, is not ours\n")
    (d / "sub").mkdir()
    (d / "sub" / "draft.tmp").write_text("draft\n")
    if manifest is not None:
        (d / "manifest.json").write_text(manifest)
    return d


@pytest.mark.parametrize("manifest", [
    "not json", "{}", json.dumps({"name": "webapp", "version": "1.0"}),
    json.dumps({"kind": "dymu-rt-bundle", "schema_version": 2}), None])
def test_non_bundle_folder_is_refused_and_untouched(manifest, run_dir, tmp_path, capsys, audit):
    d = _user_folder(tmp_path / "mine", manifest)
    before = snapshot(d)
    with audit(watch=[], allow=[]) as rec:
        code, _, err = run_cli(capsys, "build", str(run_dir), "--grid", "0.5", "--out", str(d))
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: --out") and str(d) in lines[0], err
    assert "refusing" in err
    assert snapshot(d) == before                       # every file, byte for byte
    assert rec["written"] == [], rec["written"]        # not even a temporary or a journal


def test_rebuild_keeps_files_a_user_added_to_a_bundle(run_dir, tmp_path, capsys):
    out = tmp_path / "b"
    code, _, err = run_cli(capsys, "build", str(run_dir), "--grid", "0.5", "--out", str(out))
    assert code == 0, err
    (out / "notes.txt").write_text("my notes\n")
    (out / "graphs" / "extra.tmp").write_text("mine\n")
    (out / "graphs" / ".mine.abcdefgh.tmp").write_text("mine too\n")
    (out / "engines" / "x").mkdir(parents=True)
    (out / "engines" / "x" / "keep.bin").write_bytes(b"mine")
    mine = {k: v for k, v in snapshot(out).items() if k in ("notes.txt", "graphs/extra.tmp",
                                                           "graphs/.mine.abcdefgh.tmp", "engines/x/keep.bin")}
    assert len(mine) == 4
    # Another request (another grid) into the same bundle: its graphs are replaced, not the user's files.
    code, _, err = run_cli(capsys, "build", str(run_dir), "--grid", "1", "--out", str(out))
    assert code == 0, err
    after = snapshot(out)
    assert {k: after.get(k) for k in mine} == mine


def test_edited_bundle_manifest_is_not_overwritten(run_dir, tmp_path, capsys):
    out = tmp_path / "b"
    assert run_cli(capsys, "build", str(run_dir), "--grid", "0.5", "--out", str(out))[0] == 0
    m = json.loads((out / "manifest.json").read_text())
    m["bn_eps"] = 0.5
    (out / "manifest.json").write_text(json.dumps(m))
    before = snapshot(out)
    code, _, err = run_cli(capsys, "build", str(run_dir), "--grid", "1", "--out", str(out))
    assert code != 0 and "edited" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(out) == before
    shutil.rmtree(out)
