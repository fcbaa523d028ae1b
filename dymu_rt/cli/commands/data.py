"""``dymu-rt data``: procedural multi-task scenes written in a real dataset's layout."""

from __future__ import annotations

from pathlib import Path

import typer

from dymu_rt.cli import library as lib
from dymu_rt.cli.common import console, print_json
from dymu_rt.cli.examples import epilog
from dymu_rt.core.errors import ValidationError

app = typer.Typer(no_args_is_help=True)


@app.command("synth", epilog=epilog("data synth"))
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the dataset into."),
    n: int = typer.Option(2000, "--n", help="Number of images (train + val)."),
    size: str = typer.Option("128", "--size", help="Image size: N (square) or HxW, e.g. 96x128."),
    seed: int = typer.Option(0, "--seed", help="Scene stream seed (image i is the same for any --n)."),
    layout: str = typer.Option("nyuv2", "--layout",
                               help="On-disk layout: nyuv2 (MTAN .npy) or pascal (PASCAL_MT)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Fraction of images in val."),
    previews: int = typer.Option(4, "--previews", help="Preview PNGs to write into OUT/previews/."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace the dataset in a non-empty --out."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Render a procedural multi-task dataset in a real dataset's on-disk layout."""
    if previews < 0:
        raise ValidationError(f"--previews {previews} is not valid; expected >= 0")
    summary = lib.write_synth_dataset(out, n=n, size=size, seed=seed, layout=layout.lower(),
                                      val_fraction=val_fraction, overwrite=overwrite,
                                      previews=previews, progress=not json_out)
    if json_out:
        print_json(summary)
        return
    h, w = summary["size"]
    console.print(f"wrote {summary['n_train']} train + {summary['n_val']} val {h}x{w} "
                  f"{summary['layout']} scenes to {summary['out']} "
                  f"({summary['ms_per_image']:.1f} ms/image to render)")
    if summary["previews"]:
        console.print(f"previews: {Path(summary['previews'][0]).parent}/")
