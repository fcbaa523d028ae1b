"""``dymu-rt export triton``: a bundle as a Triton Inference Server model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.cli.examples import epilog
from dymu_rt.core.errors import BackendUnavailable, BundleError
from dymu_rt.utils.progress import make_progress

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.command("triton", epilog=epilog("export triton"), help="Write a Triton model repository (topology models, hypernets, router).")
def triton_command(
    bundle: Optional[Path] = typer.Argument(None, help="Bundle directory (default: the installed one)."),
    out: Path = typer.Option(..., "--out", help="Model repository folder (new, or one written by this command: "
                             "a rebuilt bundle becomes a new version)."),
    backend: str = typer.Option("onnxruntime", "--backend", help="onnxruntime (CPU instances) | tensorrt (GPU "
                                "instances, TensorRT built by the server on its GPU) | python (Python backend "
                                "running each ONNX graph with onnxruntime: a Triton without the ONNX Runtime "
                                "backend, e.g. the nvidia-pytriton wheel's server)."),
    max_batch: int = typer.Option(8, "--max-batch", help="Triton max_batch_size of the router and topology models."),
    instances: int = typer.Option(1, "--instances", help="Instances of each topology model (each holds its weights)."),
    threads: int = typer.Option(1, "--threads", help="--backend python: ONNX Runtime intra-op threads per instance."),
    site_packages: Optional[list[Path]] = typer.Option(
        None, "--site-packages", help="--backend python: a site-packages folder with numpy and onnxruntime for the "
        "server's Python backend (repeatable; default: those of the Python running this command)."),
    no_check: bool = typer.Option(False, "--no-check", help="Do not check the configs with Triton's ModelConfig "
                                  "(which needs tritonclient[grpc])."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Export BUNDLE to REPO; check every config against Triton's ModelConfig when tritonclient is installed."""
    src = bundle or lib.default_bundle_path()
    with make_progress(transient=True, disable=as_json) as progress:
        task = progress.add_task("export", total=None, info="")
        # optional dependencies (the config check's tritonclient, the server's numpy and
        # onnxruntime for --backend python) are checked before anything is written; the staged
        # repository is checked before it replaces the live one
        summary = lib.export_triton(src, out, backend=backend, max_batch=max_batch, instances=instances,
                                    threads=threads, site_packages=site_packages, check_configs=not no_check,
                                    check=not no_check,
                                    on_step=lambda name, total: progress.update(task, advance=1, total=total, info=name))
    if no_check:
        summary["problems"], summary["checked"] = [], "not checked (--no-check)"
    elif "problems" not in summary:       # a no-op export: check the repository as it is
        try:
            summary["problems"] = lib.check_repository(out)
            summary["checked"] = "every config.pbtxt parsed with Triton's ModelConfig; inputs/outputs match the models"
        except BackendUnavailable as e:
            summary["problems"], summary["checked"] = [], f"not checked: {e}"
    problems = summary["problems"]
    if as_json:
        print_json(summary)
    else:
        title = f"Triton repository {out}" + (" (already up to date: nothing to do)" if summary["noop"] else "")
        t = Table(title=title)
        t.add_column("quantity")
        t.add_column("value")
        t.add_row("version", str(summary["version"]))
        t.add_row("models", f"{len(summary['models'])} (router dymu, 2 hypernets, {summary['topologies']} topologies)")
        t.add_row("backend", f"{summary['backend']} (max batch {summary['max_batch']}, {summary['instances']} "
                  f"instance(s) per topology" + (f", {summary['threads']} thread(s) each)" if backend == "python"
                                                 else ")"))
        t.add_row("bundle sha256", summary["bundle_sha256"])
        t.add_row("check", summary["checked"])
        console.print(t)
    if problems:
        raise BundleError(f"the exported repository failed its check: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
