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


def test_python_backend_json(capsys, small_bundle, tmp_path):
    """--backend python: every called model a Python-backend model with model.onnx, model.py and
    dymu_site.py, naming this Python's site-packages (those holding numpy and onnxruntime)."""
    from dymu_rt.serve.triton.config import parse_config
    from dymu_rt.serve.triton.export import site_packages_dirs

    repo = tmp_path / "repo"
    code, out, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--backend", "python",
                             "--instances", "2", "--threads", "3", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["backend"], s["instances"], s["threads"], s["problems"]) == ("python", 2, 3, [])
    for name in s["models"]:
        cfg = parse_config(repo / name / "config.pbtxt")
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        assert cfg.backend == "python" and not cfg.platform
        assert json.loads(params["dymu_rt.site_packages"]) == site_packages_dirs()
        assert {"model.py", "dymu_site.py"} <= {p.name for p in (repo / name / "1").iterdir()}
        if name.startswith("dymu_topo_"):
            assert params["dymu_rt.threads"] == "3" and cfg.instance_group[0].count == 2
            assert (repo / name / "1" / "model.onnx").is_file()
    # another thread count is another version; the same settings again a no-op
    code, out, _ = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--backend", "python",
                           "--instances", "2", "--threads", "3", "--json")
    assert json.loads(out)["noop"] is True
    code, out, _ = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--backend", "python",
                           "--json")
    assert (json.loads(out)["version"], json.loads(out)["noop"]) == (2, False)


def test_site_packages_is_read_by_the_model(small_bundle, tmp_path):
    """dymu_site.add_site_dirs reads the folders back from a written config.pbtxt."""
    import importlib.util
    import sys

    site = tmp_path / "site"
    for module in ("numpy", "onnxruntime"):
        (site / module).mkdir(parents=True)
    repo = tmp_path / "repo"
    code = run_cli_plain("export", "triton", str(small_bundle), "--out", str(repo), "--backend", "python",
                         "--site-packages", str(site), "--no-check")
    assert code == 0
    spec = importlib.util.spec_from_file_location("dymu_site_test", repo / "dymu" / "1" / "dymu_site.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    before = list(sys.path)
    try:
        assert mod.add_site_dirs(repo / "dymu" / "config.pbtxt") == [str(site.resolve())]
        assert sys.path[0] == str(site.resolve())
    finally:
        sys.path[:] = before


def run_cli_plain(*args) -> int:
    from dymu_rt.cli.main import main

    try:
        main(list(args))
    except SystemExit as e:
        return e.code or 0
    return 0


@pytest.mark.parametrize("args, words", [
    (["--backend", "onnxruntime", "--threads", "2"], "error: --threads/--site-packages apply to --backend python"),
    (["--backend", "python", "--instances", "0"], "error: --instances 0; expected an integer from 1 to 64"),
    (["--backend", "python", "--site-packages", "/nonexistent/x"], "error: --site-packages /nonexistent/x is not a "
                                                                    "directory"),
    (["--backend", "python", "--site-packages", "."], "error: --site-packages "),
])
def test_python_backend_bad_options_write_nothing(capsys, small_bundle, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(tmp_path / "r"), *args)
    assert code == 2 and err.startswith(words) and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    if args[-1] == ".":
        assert "holds no numpy" in err


def test_missing_tritonclient_fails_before_writing(capsys, small_bundle, tmp_path, monkeypatch):
    """Without Triton's ModelConfig protobuf the export stops before writing anything (it used
    to write the repository, print a success table, then fail its check); --no-check exports."""
    import sys

    monkeypatch.setitem(sys.modules, "tritonclient.grpc.model_config_pb2", None)
    repo = tmp_path / "r"
    code, out, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo))
    assert code != 0 and err.startswith("error: checking the exported configs needs tritonclient")
    assert "--no-check" in err and len(err.strip().splitlines()) == 1
    assert not repo.exists() and [p.name for p in tmp_path.iterdir()] == ["bundle"] and out.strip() == ""
    code, out, err = run_cli(capsys, "export", "triton", str(small_bundle), "--out", str(repo), "--no-check", "--json")
    assert code == 0 and json.loads(out)["checked"] == "not checked (--no-check)"
