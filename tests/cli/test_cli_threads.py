"""OpenMP wait policy and --threads (issue 16, item 10)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_helpers import run_cli


def _policy_after(code: str, env_policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_passive_wait_policy_is_set_before_torch():
    assert _policy_after("import dymu_rt.cli.main", None) == "PASSIVE"
    assert _policy_after("import dymu_rt", None) == "PASSIVE"


def test_a_policy_the_user_set_is_kept():
    assert _policy_after("import dymu_rt", "ACTIVE") == "ACTIVE"


def test_nothing_is_set_once_torch_is_loaded():
    # OpenMP read the variable when torch loaded; setting it afterwards would only mislead.
    assert _policy_after("import torch; import dymu_rt", None) == "None"


@pytest.mark.parametrize("cmd", [["train", "--out", "x"], ["train", "anchor", "--out", "x"], ["demo", "--out", "x"]])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_is_validated(cmd, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *cmd, "--threads", value)
    assert code != 0 and err.startswith("error: --threads") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_threads_sets_torch_threads(monkeypatch):
    """set_threads must change torch's thread count: the conftest pins 1 thread, so each
    value below differs from the one before it (a no-op set_threads fails)."""
    import torch

    from dymu_rt.training.common import set_threads

    before = torch.get_num_threads()
    try:
        for n in (2, 3, 1):
            assert torch.get_num_threads() != n
            set_threads(n)
            assert torch.get_num_threads() == n
        set_threads(None)                       # None: leave torch's setting alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
