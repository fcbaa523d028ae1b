"""`dymu-rt export triton` on the command line: summary, no-op re-export, one-line errors."""

import json

import pytest

from cli_helpers import run_cli


def test_export_json_then_noop(capsys, small_bundle, tmp_path):
    repo = tmp_path / "repo"
    code, out, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["version"], s["noop"], s["problems"], s["topologies"]) == (1, False, [], 3)
    assert s["checked"].startswith("every config.pbtxt parsed")
    assert sorted(p.name for p in repo.iterdir()) == s["models"]
    code, out, _ = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--json")
    assert code == 0 and json.loads(out)["noop"] is True


@pytest.mark.parametrize("args, words", [
    (["--max-batch", "0"], "error: --max-batch 0; expected an integer from 1 to 4096"),
    (["--backend", "tflite"], "error: --backend 'tflite' is unknown; expected one of onnxruntime, tensorrt"),
    (["--max-batch", "lots"], "error: Invalid value for '--max-batch'"),
])
def test_bad_options_one_line(capsys, small_bundle, tmp_path, args, words):
    code, out, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(tmp_path / "r"), *args)
    assert code == 2 and err.startswith(words) and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_missing_bundle_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", "triton", str(tmp_path / "nope"), "--out", str(tmp_path / "r"))
    assert code != 0 and err.startswith("error: bundle not found") and len(err.strip().splitlines()) == 1
