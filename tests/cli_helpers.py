"""Run the dymu-rt CLI in-process for tests (tests/ is on sys.path via tests/conftest.py)."""

from dymu_rt.cli.main import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``dymu-rt ARGS``."""
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
