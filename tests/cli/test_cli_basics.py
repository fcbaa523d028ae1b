"""The CLI shell: help, version, one-line user errors, --debug tracebacks."""

import subprocess
import sys

import pytest

from dymu_rt import __version__

COMMANDS = ["data", "train", "eval", "inspect", "build", "plot", "run", "profile", "profiles",
            "calibrate", "demo"]


def dymu(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dymu_rt.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_help_lists_every_command_with_help():
    res = dymu("--help")
    assert res.returncode == 0
    for cmd in COMMANDS:
        line = next((l for l in res.stdout.splitlines() if l.strip().startswith(cmd + " ")), None)
        assert line is not None and len(line.split()) > 1, f"{cmd} missing or without help"


def test_version():
    res = dymu("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"dymu-rt {__version__}"


def test_user_error_is_one_line_without_traceback(tmp_path):
    res = dymu("train", "controller", "--out", str(tmp_path / "nope"))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_debug_shows_traceback(tmp_path):
    res = dymu("--debug", "train", "controller", "--out", str(tmp_path / "nope"))
    assert res.returncode != 0 and "Traceback" in res.stderr


@pytest.mark.parametrize("args", [["train", "--preset", "no-such-preset", "--out", "x"]])
def test_bad_preset_names_the_value(args, tmp_path):
    res = dymu(*args[:-1], str(tmp_path / "x"))
    assert res.returncode != 0 and "no-such-preset" in res.stderr and "synth-nyu" in res.stderr
