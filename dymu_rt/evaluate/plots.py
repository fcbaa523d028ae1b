"""Evaluation pictures (PNG, matplotlib Agg, written atomically).

* :func:`plot_resource_usage`: resource usage (e.g. GFLOPs of the predicted tree) over the
  task simplex, one ternary filled-contour map per resource preference c (the paper's
  Figure 5). N = 3 only can be drawn flat; N = 2 draws value vs r_1, one line per c; for
  N > 3 the fallback draws value vs c (mean and min–max over r) and value vs the
  normalized entropy of r (how evenly r spreads importance), coloured by c.
* :func:`plot_tree` / :func:`plot_trees`: a parent table as a diagram — one column per
  stream, one row per layer, the image at the bottom and the task heads on top; alive nodes
  filled, dead (pruned) nodes hollow, cross-task edges red.
* :func:`plot_controllability`: marginal controllability — per task, its loss against its
  preference r_i, one line per c.

Inputs are plain sequences (no model objects), so these draw from a saved eval report too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from dymu_rt.core.tree import canonicalize
from dymu_rt.core.io import atomic_path

# Barycentric corners of the task simplex for N = 3: task 0 bottom left, task 1 bottom
# right, task 2 on top.
_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out


def _table(points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(points) == 0:
        raise ValueError("nothing to plot: no (r, c, value) points")
    r = np.asarray([[float(v) for v in p[0]] for p in points], dtype=np.float64)
    c = np.asarray([float(p[1]) for p in points], dtype=np.float64)
    v = np.asarray([float(p[2]) for p in points], dtype=np.float64)
    return r, c, v


def _names(task_names: Optional[Sequence[str]], n: int) -> list[str]:
    if task_names is None:
        return [f"task {i}" for i in range(n)]
    if len(task_names) != n:
        raise ValueError(f"{len(task_names)} task names for {n} tasks")
    return list(task_names)


def _pick(values: np.ndarray, wanted: Optional[Sequence[float]], max_panels: int) -> list[float]:
    uniq = np.unique(values)
    if wanted is not None:
        return [float(uniq[np.argmin(np.abs(uniq - w))]) for w in wanted]
    if len(uniq) <= max_panels:
        return [float(u) for u in uniq]
    idx = np.unique(np.round(np.linspace(0, len(uniq) - 1, max_panels)).astype(int))
    return [float(uniq[i]) for i in idx]


def plot_resource_usage(points, out: str | Path, task_names: Optional[Sequence[str]] = None,
                        cs: Optional[Sequence[float]] = None, value_label: str = "GFLOPs",
                        title: Optional[str] = None, max_panels: int = 6) -> Path:
    """Draw resource usage over the simplex, one panel per c, to PNG ``out``; returns the path.

    ``points``: sequence of (r, c, value). ``cs`` picks the panels (nearest c present);
    default: every c, thinned evenly to ``max_panels``. One colour scale for all panels.
    """
    from matplotlib.colors import Normalize
    from matplotlib.tri import Triangulation

    plt = _pyplot()
    r, c, v = _table(points)
    n = r.shape[1]
    names = _names(task_names, n)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + max(1e-9, abs(lo) * 1e-6)       # a constant map still needs two levels
    norm = Normalize(lo, hi)
    panels = _pick(c, cs, max_panels)

    if n == 3:
        cols = min(3, len(panels))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.0, 3.3 * rows + 0.4), squeeze=False,
                                 layout="constrained")
        levels = np.linspace(lo, hi, 13)
        # Pad the outer levels: tricontourf leaves values on the outermost level unfilled
        # (white holes where the map reaches its maximum) with float rounding.
        pad = (hi - lo) * 1e-6
        levels[0], levels[-1] = lo - pad, hi + pad
        mappable = None
        for ax, cv in zip(axes.flat, panels):
            sel = np.isclose(c, cv)
            xy = r[sel] @ _CORNERS
            try:
                tri = Triangulation(xy[:, 0], xy[:, 1])
                mappable = ax.tricontourf(tri, v[sel], levels=levels, cmap="viridis", norm=norm, extend="neither")
            except (ValueError, RuntimeError):   # < 3 points or all collinear: no triangles
                mappable = ax.scatter(xy[:, 0], xy[:, 1], c=v[sel], cmap="viridis", norm=norm, s=40)
            ax.plot(xy[:, 0], xy[:, 1], ".", color="k", ms=1.5, alpha=0.35)
            ax.fill(*_CORNERS.T, facecolor="none", edgecolor="0.3", lw=0.8)
            for k, (x, y) in enumerate(_CORNERS):
                ax.annotate(names[k], (x, y), ha="center", va="top" if k < 2 else "bottom", fontsize=8,
                            xytext=(0, -4 if k < 2 else 4), textcoords="offset points")
            ax.set_title(f"c = {cv:g}", fontsize=10)
            ax.set_aspect("equal")
            ax.set_xlim(-0.12, 1.12)
            ax.set_ylim(-0.12, _CORNERS[2, 1] + 0.12)
            ax.axis("off")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.85, label=value_label)
    elif n == 2:
        fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
        for k, cv in enumerate(panels):
            sel = np.isclose(c, cv)
            order = np.argsort(r[sel, 0])
            ax.plot(r[sel, 0][order], v[sel][order], "o-", ms=3, color=f"C{k}", label=f"c = {cv:g}")
        ax.set_xlabel(f"r[{names[0]}]  (r[{names[1]}] = 1 − r[{names[0]}])")
        ax.set_ylabel(value_label)
        ax.legend(fontsize=7)
    else:
        # The simplex of N > 3 tasks cannot be drawn flat: summarize over r instead.
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        uniq = np.unique(c)
        means = [v[np.isclose(c, u)].mean() for u in uniq]
        a1.fill_between(uniq, [v[np.isclose(c, u)].min() for u in uniq],
                        [v[np.isclose(c, u)].max() for u in uniq], color="C0", alpha=0.25, label="min–max over r")
        a1.plot(uniq, means, "o-", color="C0", ms=3, label="mean over r")
        a1.set_xlabel("c (larger = more frugal)")
        a1.set_ylabel(value_label)
        a1.legend(fontsize=7)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = -np.nansum(np.where(r > 0, r * np.log(r), 0.0), axis=1) / math.log(n)
        sc = a2.scatter(ent, v, c=c, cmap="plasma", s=10, alpha=0.7)
        a2.set_xlabel("normalized entropy of r (0 = one task, 1 = uniform)")
        a2.set_ylabel(value_label)
        fig.colorbar(sc, ax=a2, label="c")
    fig.suptitle(title or f"resource usage over task preferences ({value_label})", fontsize=11)
    return _save(fig, out)


def _draw_tree(ax, parents, names: list[str], label: Optional[str]) -> None:
    p = canonicalize(parents)
    L, N = p.shape
    alive = p >= 0
    # Image at y = -1, layers at y = 0..L-1, heads at y = L.
    ax.scatter([(N - 1) / 2], [-1], marker="s", s=160, color="0.85", edgecolors="0.3", zorder=3)
    ax.annotate("image", ((N - 1) / 2, -1), xytext=(0, -12), textcoords="offset points", ha="center",
                fontsize=7)
    for j in range(N):
        if alive[0, j]:
            ax.plot([(N - 1) / 2, j], [-1, 0], color="0.6", lw=1.0, zorder=1)
    for l in range(1, L):
        for j in range(N):
            if alive[l, j]:
                k = p[l, j]
                cross = k != j
                ax.plot([k, j], [l - 1, l], color="red" if cross else "0.45", lw=2.2 if cross else 1.2,
                        zorder=2)
    for l in range(L):
        for j in range(N):
            color = f"C{j % 10}"
            if alive[l, j]:
                ax.scatter([j], [l], s=110, color=color, edgecolors="k", linewidths=0.6, zorder=4)
            else:
                ax.scatter([j], [l], s=110, facecolors="none", edgecolors="0.6", linestyle="--",
                           linewidths=0.8, zorder=4)
    for j, name in enumerate(names):
        ax.annotate("", xy=(j, L - 0.05 + 0.55), xytext=(j, L - 1 + 0.15),
                    arrowprops=dict(arrowstyle="->", color="0.3", lw=1.0))
        ax.text(j, L + 0.6, name, ha="center", va="bottom", fontsize=8, rotation=0,
                bbox=dict(boxstyle="round,pad=0.25", fc=f"C{j % 10}", alpha=0.25, ec="none"))
    ax.set_xlim(-0.7, N - 0.3)
    ax.set_ylim(-1.7, L + 1.4)
    ax.set_xticks(range(N))
    ax.set_xticklabels([f"stream {j}" for j in range(N)], fontsize=7)
    ax.set_yticks(range(L))
    ax.set_yticklabels([str(l) for l in range(L)], fontsize=7)
    ax.set_ylabel("layer")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    used, cross = int(alive.sum()), int(sum(1 for l in range(1, L) for j in range(N) if alive[l, j] and p[l, j] != j))
    head = f"{label}\n" if label else ""
    ax.set_title(f"{head}{used}/{L * N} nodes run, {cross} cross-task edges", fontsize=8)


def plot_trees(trees: Sequence[tuple[str, np.ndarray]], out: str | Path,
               task_names: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Path:
    """Draw several (label, parent table) panels side by side to PNG ``out``; returns the path."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    if len(trees) == 0:
        raise ValueError("nothing to plot: no trees")
    n = np.asarray(trees[0][1]).shape[1]
    L = np.asarray(trees[0][1]).shape[0]
    names = _names(task_names, n)
    cols = min(4, len(trees))
    rows = math.ceil(len(trees) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.75 * n + 2.0 * cols + 0.6 * (cols - 1) * n / 3,
                                                  0.42 * L * rows + 1.8 * rows),
                             squeeze=False, layout="constrained")
    for ax, (label, table) in zip(axes.flat, trees):
        _draw_tree(ax, table, names, label)
    for ax in list(axes.flat)[len(trees):]:
        ax.axis("off")
    handles = [Line2D([], [], marker="o", ls="", color="C0", mec="k", label="node runs"),
               Line2D([], [], marker="o", ls="", mfc="none", mec="0.6", label="pruned (dead)"),
               Line2D([], [], color="0.45", label="same-stream edge"),
               Line2D([], [], color="red", lw=2.2, label="cross-task edge")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def plot_tree(parents, out: str | Path, task_names: Optional[Sequence[str]] = None,
              title: Optional[str] = None) -> Path:
    """Draw one parent table (L, N) as a tree diagram to PNG ``out``; returns the path."""
    return plot_trees([(title or "", parents)], out, task_names)


def plot_controllability(rows, out: str | Path, task_names: Optional[Sequence[str]] = None,
                         loss_label: str = "loss", title: Optional[str] = None) -> Path:
    """Marginal controllability to PNG ``out``: per task i, loss_i vs r_i, one line per c.

    ``rows``: sequence of (r, c, losses) with losses one value per task. A controllable
    model's lines fall from left to right (more preference, lower loss), and higher c
    (cheaper trees) typically sits above.
    """
    plt = _pyplot()
    if len(rows) == 0:
        raise ValueError("nothing to plot: no (r, c, losses) rows")
    r = np.asarray([[float(v) for v in row[0]] for row in rows])
    c = np.asarray([float(row[1]) for row in rows])
    loss = np.asarray([[float(v) for v in row[2]] for row in rows])
    n = r.shape[1]
    if loss.shape != r.shape:
        raise ValueError(f"losses have shape {loss.shape}, r has {r.shape}: one loss per task expected")
    names = _names(task_names, n)
    cs = np.unique(c)
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.0), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        for k, cv in enumerate(cs):
            sel = np.isclose(c, cv)
            order = np.argsort(r[sel, i], kind="stable")
            color = cmap(k / max(1, len(cs) - 1))
            ax.plot(r[sel, i][order], loss[sel, i][order], "o-", ms=3, lw=1.2, color=color, label=f"c = {cv:g}")
        ax.set_xlabel(f"r[{names[i]}]")
        ax.set_ylabel(f"{names[i]} {loss_label}")
        ax.set_title(names[i], fontsize=9)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or "marginal controllability: a task's loss vs its preference", fontsize=10)
    return _save(fig, out)
