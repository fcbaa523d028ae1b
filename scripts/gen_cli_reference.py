"""Write docs/cli.md, the CLI reference, from the Typer app itself (every command's --help).

    python scripts/gen_cli_reference.py            # rewrite docs/cli.md
    python scripts/gen_cli_reference.py --check    # exit 1 when docs/cli.md is stale

tests/docs/test_docs.py runs the check, so the committed reference always matches the app.
The help is rendered at a fixed width (100 columns) so the file does not depend on the
terminal it was generated in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
WIDTH = 100

HEADER = """# CLI reference

Generated from the command-line app by `python scripts/gen_cli_reference.py` (a test checks
that this page matches the app); `dymu-rt COMMAND --help` prints the same. Every command
that a user can get wrong answers in one `error:` line and a non-zero exit; `dymu-rt --debug
COMMAND ...` shows the traceback.
"""


def _walk(cmd, path: list[str]):
    # Typer carries its own copy of click (typer._click): use its Context, and duck typing.
    ctx = _context_class()(cmd, info_name=" ".join(path), parent=None, max_content_width=WIDTH,
                        terminal_width=WIDTH)
    yield path, cmd, ctx
    if hasattr(cmd, "list_commands"):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, path + [name])


def _context_class():
    try:
        from typer._click.core import Context            # typer >= 0.16 vendors click
    except ImportError:
        from click import Context
    return Context


def render() -> str:
    from dymu_rt.cli.main import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, cmd, ctx in _walk(root, ["dymu-rt"]):
        title = " ".join(path)
        help_text = cmd.get_help(ctx).rstrip()
        parts.append(f"## `{title}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md differs from the app")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            sys.exit(f"{OUT.relative_to(ROOT)} is stale: run python scripts/gen_cli_reference.py")
        print(f"{OUT.relative_to(ROOT)} matches the app")
        return
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
