"""The resource-usage map of a bundle: GMACs (the paper's "GFLOPs") of the chosen tree over the grid.

For N = 3 tasks, one ternary panel per resource preference c (a subset of the grid's c
values when there are many): each grid point of the task simplex is drawn at its
barycentric position, coloured by its topology's GMACs, on one shared colour scale. For
N = 2 a heat map over (r_1, c). For N > 3 the simplex cannot be drawn flat; the map
shows GMACs against c (every point, plus the mean over r).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dymu_rt.core import units
from dymu_rt.core.io import atomic_path


def _point_table(manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tops = manifest["topologies"]
    r = np.asarray([p["r"] for p in manifest["points"]], dtype=np.float64)
    c = np.asarray([p["c"] for p in manifest["points"]], dtype=np.float64)
    g = np.asarray([units.gmacs(tops[p["topology"]]["macs"]) for p in manifest["points"]], dtype=np.float64)
    return r, c, g


def _pick_cs(cs: np.ndarray, max_panels: int) -> list[float]:
    if len(cs) <= max_panels:
        return list(cs)
    idx = np.unique(np.round(np.linspace(0, len(cs) - 1, max_panels)).astype(int))
    return [cs[i] for i in idx]


def plot_resource_map(manifest: dict[str, Any], out: str | Path, max_panels: int = 6,
                      title: Optional[str] = None) -> Path:
    """Draw the map of ``manifest`` to PNG ``out`` (atomically); returns the path.

    Needs only ``points`` ({r, c, topology}), ``topologies`` ({id: {macs}}), ``tasks``
    ([{name}]), ``grid`` ({step}) and ``preset``: any manifest-like point table works
    (dymu_rt.evaluate.report draws a dense controller map with it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    out = Path(out)
    r, c, g = _point_table(manifest)
    tasks = [t["name"] for t in manifest["tasks"]]
    n = len(tasks)
    norm = Normalize(vmin=g.min(), vmax=g.max() if g.max() > g.min() else g.min() + 1e-9)
    cmap = "viridis"
    label = "GMACs (conv+linear MACs) of the selected tree"
    n_top = len(manifest["topologies"])
    head = title or (f"{manifest['preset']}: resource usage over the grid "
                     f"({len(r)} points, {n_top} topologies)")

    if n == 3:
        cs = _pick_cs(np.unique(c), max_panels)
        cols = min(3, len(cs))
        rows = math.ceil(len(cs) / cols)
        panel = 3.6                                          # inches per panel side
        fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + 1.2, panel * 0.95 * rows + 0.5),
                                 squeeze=False, layout="constrained")
        corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
        step = manifest["grid"]["step"]
        margin = 0.55 * step + 0.09                          # room for edge hexagons + labels
        span = 1 + 2 * margin                                # data units across a panel
        # Hexagons just touching their neighbours: diameter = step in data units.
        diameter_pt = 0.98 * step * panel * 72 / span
        for ax, cv in zip(axes.flat, cs):
            sel = np.isclose(c, cv)
            xy = r[sel] @ corners
            ax.fill(*corners.T, facecolor="none", edgecolor="0.6", lw=0.8)
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=g[sel], cmap=cmap, norm=norm, s=diameter_pt ** 2,
                            marker="h", edgecolors="none")
            for k, (x, y) in enumerate(corners):
                off = diameter_pt / 2 + 2
                ax.annotate(tasks[k], (x, y), ha="center", va="top" if k < 2 else "bottom", fontsize=8,
                            xytext=(0, -off) if k < 2 else (0, off), textcoords="offset points")
            ax.set_title(f"c = {cv:g}", fontsize=10)
            ax.set_aspect("equal")
            ax.set_xlim(-margin, 1 + margin)
            ax.set_ylim(-margin, math.sqrt(3) / 2 + margin)
            ax.axis("off")
        for ax in list(axes.flat)[len(cs):]:
            ax.axis("off")
        fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.85, label=label)
    elif n == 2:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        r1, cs = np.unique(r[:, 0]), np.unique(c)
        img = np.full((len(cs), len(r1)), np.nan)
        for a, b, v in zip(r[:, 0], c, g):
            img[np.searchsorted(cs, b), np.searchsorted(r1, a)] = v
        # Cells centred on the grid values.
        dr = (r1[-1] - r1[0]) / max(1, len(r1) - 1)
        dc = (cs[-1] - cs[0]) / max(1, len(cs) - 1)
        im = ax.imshow(img, origin="lower", aspect="auto", cmap=cmap, norm=norm,
                       extent=(r1[0] - dr / 2, r1[-1] + dr / 2, cs[0] - dc / 2, cs[-1] + dc / 2))
        ax.set_xlabel(f"r[{tasks[0]}]  (r[{tasks[1]}] = 1 - r[{tasks[0]}])")
        ax.set_ylabel("c (larger = more frugal)")
        fig.colorbar(im, ax=ax, label=label)
    else:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        c_step = manifest["grid"].get("c_step", manifest["grid"].get("step", 0.1))
        jitter = (np.random.default_rng(0).random(len(c)) - 0.5) * 0.3 * c_step
        ax.scatter(c + jitter, g, s=6, alpha=0.35, c=g, cmap=cmap, norm=norm)
        cs = np.unique(c)
        ax.plot(cs, [g[np.isclose(c, v)].mean() for v in cs], "k-o", ms=3, label="mean over r")
        ax.set_xlabel("c (larger = more frugal)")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(head, fontsize=11)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
