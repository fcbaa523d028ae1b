"""Entry point of the ``dymu-rt`` console script.

User errors (:class:`dymu_rt.errors.DymuError`) print one line on stderr and exit
non-zero; ``--debug`` (or ``DYMU_RT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from dymu_rt import __version__
from dymu_rt.errors import DymuError

from cli.commands import (
    build,
    calibrate,
    data,
    demo,
    evaluate,
    inspect,
    plot,
    profile,
    profiles,
    run,
    train,
)

app = typer.Typer(
    name="dymu-rt",
    help="Deploy controllable dynamic multi-task networks: train, build engines per "
    "(r, c) preference, run and profile them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dymu-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """dymu-rt: controllable dynamic multi-task networks, from training to devices."""


app.add_typer(data.app, name="data", help="Render procedural multi-task scenes.")
app.add_typer(train.app, name="train", help="Train the anchor net and the hypernets.")
app.command("eval", help="Evaluate a trained controller over preferences (HV, uniformity, cost).")(
    evaluate.eval_command
)
app.command("inspect", help="Describe a preset, a run or a bundle (tasks, topologies, cost).")(
    inspect.inspect_command
)
app.command("build", help="Enumerate a preference grid and compile one engine per topology.")(
    build.build_command
)
app.command("plot", help="Draw a bundle's resource-usage map over the preference grid (PNG).")(
    plot.plot_command
)
app.command("run", help="Run images at a preference (r, c) and write per-task outputs.")(
    run.run_command
)
app.command("profile", help="Time every topology of a bundle on this device.")(
    profile.profile_command
)
app.command("profiles", help="List the device profiles.")(profiles.profiles_command)
app.command("calibrate", help="Calibrate INT8 quantization for a bundle's topologies.")(
    calibrate.calibrate_command
)
app.command("demo", help="Run the whole pipeline on procedural scenes in minutes.")(
    demo.demo_command
)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI; map user errors to one line and a non-zero exit."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("DYMU_RT_DEBUG") == "1"
    try:
        app(args=args, prog_name="dymu-rt")
    except DymuError as e:
        if debug:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
