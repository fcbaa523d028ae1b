"""Entry point of the ``dymu-rt`` console script.

User errors print one line ``error: ...`` on stderr, no traceback, and exit non-zero:
:class:`dymu_rt.core.errors.DymuError` (its ``exit_code``, 2 or 3), command-line usage errors
(unknown option, bad or missing value: exit 2) and operating-system errors such as an
unwritable or missing path or a full disk (exit 1). ``--debug`` anywhere on the command
line (or ``DYMU_RT_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from dymu_rt import __version__
from dymu_rt.bundle.checksum import allow_unverified
from dymu_rt.core.errors import DymuError, missing_extra

from dymu_rt.cli.commands import (
    build,
    calibrate,
    check,
    compare,
    data,
    demo,
    evaluate,
    export,
    inspect,
    plot,
    profile,
    profiles,
    run,
    train,
)

from dymu_rt.cli.examples import epilog  # noqa: E402

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
    allow_unverified: bool = typer.Option(False, "--allow-unverified", help="Use bundles without a manifest "
                                          "checksum (written before dymu-rt checksummed manifests); warns on "
                                          "every use."),
) -> None:
    """dymu-rt: controllable dynamic multi-task networks, from training to devices."""


app.add_typer(data.app, name="data", help="Render procedural multi-task scenes.", epilog=epilog("data"))
app.add_typer(train.app, name="train", help="Train the anchor net and the hypernets.", epilog=epilog("train"))
app.command("eval", help="Evaluate a controller over preferences (HV, cost).", epilog=epilog("eval"))(
    evaluate.eval_command
)
app.command("compare", help="Methods of one preset side by side (Δ_T, latency).", epilog=epilog("compare"))(
    compare.compare_command
)
app.command("inspect", help="Describe a preset, run or bundle (tasks, cost).", epilog=epilog("inspect"))(
    inspect.inspect_command
)
app.command("build", help="Compile one engine per topology of a preference grid.", epilog=epilog("build"))(
    build.build_command
)
app.command("plot", help="Plot a bundle's resource usage over its grid (PNG).", epilog=epilog("plot"))(
    plot.plot_command
)
app.command("run", help="Run images at a preference (r, c); write task outputs.", epilog=epilog("run"))(
    run.run_command
)
app.command("profile", help="Time every topology of a bundle on this device.", epilog=epilog("profile"))(
    profile.profile_command
)
app.command("profiles", help="List the device profiles.", epilog=epilog("profiles"))(profiles.profiles_command)
app.command("calibrate", help="Calibrate INT8 quantization for a bundle's topologies.", epilog=epilog("calibrate"))(
    calibrate.calibrate_command
)
app.command("check", help="Check every backend/precision against FP32 (exit 1 if off).", epilog=epilog("check"))(
    check.check_command
)
app.add_typer(export.app, name="export", help="Export a bundle for a serving system (Triton).", epilog=epilog("export"))
app.command("demo", help="Run the whole pipeline on procedural scenes in minutes.", epilog=epilog("demo"))(
    demo.demo_command
)


def _strip_flag(args: list[str], flag: str) -> tuple[list[str], bool]:
    """Remove every ``flag`` before a ``--`` separator (it is accepted anywhere)."""
    out, seen, rest = [], False, False
    for a in args:
        if not rest and a == flag:
            seen = True
            continue
        rest = rest or a == "--"
        out.append(a)
    return out, seen


def _strip_debug(args: list[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` before a ``--`` separator (it is accepted anywhere)."""
    return _strip_flag(args, "--debug")


def _os_error_line(e: OSError) -> str:
    """One line for an OSError, naming the path(s) when the error carries them."""
    reason = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    if paths:
        return f"{reason}: {' -> '.join(paths)}"
    return reason


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI; map user errors to one line and a non-zero exit."""
    from typer._click import exceptions as click_exc

    args, debug = _strip_debug(list(sys.argv[1:] if argv is None else argv))
    # --allow-unverified (anywhere): read bundles that have no manifest checksum, with a
    # warning on every use (dymu_rt.bundle.checksum); off by default.
    args, unverified = _strip_flag(args, "--allow-unverified")
    allow_unverified(unverified)
    debug = debug or os.environ.get("DYMU_RT_DEBUG") == "1"
    try:
        rv = app(args=args, prog_name="dymu-rt", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as e:      # `dymu-rt`, `dymu-rt data`: show the help
        e.show()
        sys.exit(e.exit_code)
    except click_exc.UsageError as e:             # unknown option, bad/missing value
        if debug:
            raise
        _fail(e.format_message().splitlines()[0] if e.format_message() else "invalid usage", 2)
    except click_exc.ClickException as e:
        if debug:
            raise
        _fail(e.format_message(), e.exit_code or 1)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except DymuError as e:
        if debug:
            raise
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except ImportError as e:
        line = missing_extra(e)
        if debug or line is None:
            raise
        _fail(f"dymu-rt {args[0] if args else ''}: {line}".replace(" :", ":"), 2)
    except OSError as e:
        if debug:
            raise
        _fail(_os_error_line(e), 1)
    # Without standalone mode, typer returns the code of a ``typer.Exit`` (0 for --help and
    # --version); a command's own return value is not an exit status.
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        sys.exit(rv)


if __name__ == "__main__":
    main()
