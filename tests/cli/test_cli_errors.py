"""User errors on the command line: one `error: ...` line, sane exit codes, --debug anywhere."""

import os
import subprocess
import sys

import pytest

from dymu_rt.cli.main import _strip_debug, main


def run_main(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_os_error_is_one_line_naming_the_path(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "dataset"                     # parent is a file: mkdir fails (ENOTDIR)
    code, _, err = run_main(capsys, "data", "synth", "--out", str(out), "--n", "2", "--size", "16")
    assert code == 1
    assert_one_error_line(err, str(blocker))


def test_os_error_under_proc_is_one_line():
    res = subprocess.run([sys.executable, "-m", "dymu_rt.cli", "data", "synth", "--out", "/proc/x", "--n", "2",
                          "--size", "16"], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert_one_error_line(res.stderr, "/proc/x")


def test_os_error_with_debug_anywhere_shows_the_traceback(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = subprocess.run([sys.executable, "-m", "dymu_rt.cli", "data", "synth", "--out", str(blocker / "d"),
                          "--debug", "--n", "2", "--size", "16"], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" in res.stderr and "NotADirectoryError" in res.stderr


@pytest.mark.parametrize("args, needle", [
    (["data", "synth", "--out", "X", "--n", "abc"], "'--n'"),
    (["train", "anchor", "--preset", "synth-nyu"], "--out"),
    (["train", "--preset", "synth-nyu", "--out", "X", "--no-such-flag"], "--no-such-flag"),
    (["no-such-command"], "no-such-command"),
    (["train"], "--out"),
])
def test_usage_errors_are_one_line_with_exit_code_2(capsys, tmp_path, args, needle):
    args = [str(tmp_path / "x") if a == "X" else a for a in args]
    code, out, err = run_main(capsys, *args)
    assert code == 2
    assert_one_error_line(err, needle)
    assert "Usage:" not in err + out
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--save-every", "0"], "--save-every 0"),
    (["--n-train", "0"], "--n-train 0"),
    (["--n-val", "0"], "--n-val 0"),
    (["--batch", "0"], "--batch 0"),
    (["--anchor-steps", "0"], "--anchor-steps 0"),
    (["--edge-steps", "-1"], "--edge-steps -1"),
    (["--seed", "-3"], "--seed -3"),
    (["--lr", "0"], "--lr 0"),
    (["--optimizer", "rmsprop"], "rmsprop"),
    (["--init", "imagenet"], "--init 'imagenet'"),
    (["--init", "pretrained:/nonexistent/r18.safetensors"], "no such file"),
    (["--pretrain-steps", "0"], "--pretrain-steps 0"),
    (["--active-reading", "paper"], "--active-reading 'paper'"),
    (["--schedule", "linear"], "linear"),
    (["--tau", "1.5"], "--tau 1.5"),
    (["--lambda-a", "-1"], "--lambda-a -1"),
    (["--identity-prior", "-1"], "--identity-prior -1"),
    (["--identity-prior", "nan"], "--identity-prior nan"),
    (["--identity-prior-c-slope", "2"], "--identity-prior-c-slope 2.0"),
    (["--identity-prior-c-slope", "nan"], "--identity-prior-c-slope nan"),
    (["--c-zero-share", "1"], "--c-zero-share 1.0"),
    (["--l2sp", "-0.1"], "--l2sp -0.1"),
])
def test_bad_training_values_are_one_line_and_write_nothing(capsys, tmp_path, extra, needle):
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "train", "--preset", "synth-nyu", "--out", str(out), "--quiet", *extra)
    assert code == 2
    assert_one_error_line(err, needle)
    assert not out.exists()


@pytest.mark.parametrize("sub, extra", [("anchor", ["--steps", "0"]), ("anchor", ["--save-every", "0"]),
                                       ("controller", ["--n-train", "0"]), ("phn-bn", ["--steps", "0"])])
def test_subcommands_validate_too(capsys, tmp_path, sub, extra):
    args = ["train", sub, "--out", str(tmp_path / "run"), *extra]
    if sub == "anchor":
        args += ["--preset", "synth-nyu"]
    code, _, err = run_main(capsys, *args)
    assert code == 2
    assert_one_error_line(err, extra[0] + " " + extra[1])


def test_help_and_version_still_exit_0(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "Commands" in out
    code, out, _ = run_main(capsys, "train", "anchor", "--help")
    assert code == 0 and "--optimizer" in out and "--schedule" in out and "--lr" in out
    code, out, _ = run_main(capsys, "train", "controller", "--help")
    assert code == 0 and all(f in out for f in ("--tau", "--lambda-a", "--lambda-i", "--no-inactive-loss",
                                                "--no-layer-weighting", "--no-affinity", "--no-dichotomy"))
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.startswith("dymu-rt ")


def test_no_arguments_shows_help_and_exits_non_zero(capsys):
    code, out, err = run_main(capsys)
    assert code == 2 and "Usage:" in out + err


@pytest.mark.parametrize("where", ["first", "after-subcommand", "last"])
def test_debug_is_accepted_anywhere(tmp_path, where):
    base = ["train", "controller", "--out", str(tmp_path / "nope")]
    args = {"first": ["--debug", *base], "after-subcommand": ["train", "--debug", *base[1:]],
            "last": [*base, "--debug"]}[where]
    res = subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" in res.stderr and "is not a run yet" in res.stderr
    assert "No such option" not in res.stderr


def test_strip_debug_keeps_arguments_after_a_separator():
    assert _strip_debug(["a", "--debug", "b"]) == (["a", "b"], True)
    assert _strip_debug(["a", "--", "--debug"]) == (["a", "--", "--debug"], False)


def test_help_lines_are_not_cut_off():
    env = {**os.environ, "COLUMNS": "80"}
    for args in (["--help"], ["train", "--help"]):
        res = subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True,
                             env=env, timeout=120)
        assert res.returncode == 0
        in_commands = False
        for line in res.stdout.splitlines():
            in_commands = in_commands or line.startswith("Commands")
            if in_commands:
                assert "..." not in line and "…" not in line, line


def test_training_flags_are_saved_in_the_run_config(capsys, tmp_path, monkeypatch):
    """`train` flags (optimizer, schedule, regularizer, data options) land in config.json;
    a resumed `train controller` reuses them and refuses a contradicting --n-train."""
    import json

    import dymu_rt.training.pipeline as pipeline

    calls = []

    setups = []

    def fake_train(run, stages, **kw):         # the stages themselves are tested in tests/train
        setups.append((kw.pop("setup"), kw.pop("setup_record")))
        calls.append((stages, kw))
        pipeline.data_options(run, kw["seed"], kw["n_train"], kw["n_val"])
        return run.read_config()

    monkeypatch.setattr(pipeline, "train", fake_train)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "train", "--preset", "synth-nyu", "--out", str(out), "--quiet",
                            "--optimizer", "SGD", "--lr", "0.05", "--schedule", "step", "--weight-decay", "0",
                            "--tau", "0.3", "--lambda-a", "0.5", "--lambda-i", "0.05", "--no-inactive-loss",
                            "--no-layer-weighting", "--no-affinity", "--no-dichotomy", "--seed", "2",
                            "--n-train", "8", "--init", "shared", "--pretrain-steps", "5",
                            "--active-reading", "child", "--identity-prior", "6", "--identity-prior-learnable",
                            "--identity-prior-c-slope", "0.5", "--c-zero-share", "0.1", "--l2sp", "0")
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    t = cfg["preset"]["train"]
    assert (t["anchor_optimizer"], t["anchor_lr"], t["anchor_schedule"], t["anchor_weight_decay"]) == \
        ("sgd", 0.05, "step", 0.0)
    assert (t["tau"], t["lambda_active"], t["lambda_inactive"]) == (0.3, 0.5, 0.05)
    assert not any(t[k] for k in ("inactive_loss", "layer_weighting", "use_affinity", "dichotomy"))
    assert (t["anchor_init"], t["anchor_pretrain_steps"], t["active_reading"]) == ("shared", 5, "child")
    assert (t["identity_prior"], t["identity_prior_learnable"]) == (6.0, True)      # synth presets: 8, fixed
    assert (t["identity_prior_c_slope"], t["c_zero_share"], t["anchor_l2sp"]) == (0.5, 0.1, 0.0)
    assert cfg["data_options"] == {"seed": 2, "n_train": 8, "n_val": None}
    code, _, err = run_main(capsys, "train", "controller", "--out", str(out), "--quiet")
    assert code == 0, err
    assert calls[-1] == ("controller", {"seed": None, "n_train": None, "n_val": None, "progress": False,
                                        "save_every": 100})
    code, _, err = run_main(capsys, "train", "controller", "--out", str(out), "--n-train", "16")
    assert code == 2
    assert_one_error_line(err, "--n-train 8, not --n-train 16")
