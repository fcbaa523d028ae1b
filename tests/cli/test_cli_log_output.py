"""Output that survives a log (issue 25): when stdout is not a terminal, tables print at full
width (nothing cut at 80 columns) and progress bars are off. ~3 s."""

import subprocess
import sys

from dymu_rt.utils.progress import make_progress


def test_progress_bars_are_off_when_stdout_is_not_a_terminal():
    assert not sys.stdout.isatty()                        # pytest captures stdout
    assert make_progress().disable


def test_a_wide_table_comes_out_whole_through_a_pipe():
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "80"}          # even where a terminal width is set
    code = ("from dymu_rt.cli.common import console\nfrom rich.table import Table\n"
            "t = Table()\nfor i in range(12): t.add_column(f'column number {i}')\n"
            "t.add_row(*[f'd2e850566993a3c7-{i}' for i in range(12)])\nconsole.print(t)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout and all(f"d2e850566993a3c7-{i}" in res.stdout for i in range(12))
