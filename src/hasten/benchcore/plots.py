"""PNG figures every bench draws: grouped speedup bars, scatter plots, speedup/fidelity
Pareto plots, sample grids.

Uses matplotlib's object API (``matplotlib.figure.Figure``, no global pyplot state), so it
works headless and in parallel test workers. matplotlib is imported inside each function
(it is an optional extra); check ``importlib.util.find_spec("matplotlib")`` before drawing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_rows", "pareto_front", "pareto_plot", "grouped_bars", "scatter_plot"]


def image_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, cell_inches: float = 0.42) -> None:
    """One row of images per entry, its title on the left.

    Args:
        rows: ``(title, images)`` with images (N, C, H, W) float in [-1, 1], C = 1 or 3; rows
            may differ in N.
        path: the PNG to write (parent folders are created).
        cell_inches: drawn size of one image.

    Raises:
        ValueError: ``rows`` is empty.
    """
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("no rows to draw")
    columns = max(images.shape[0] for _, images in rows)
    margin = 0.2 + 0.065 * max(len(title) for title, _ in rows)  # inches for the titles (7 pt)
    width = margin + columns * cell_inches + 0.05
    figure = Figure(figsize=(width, 0.15 + len(rows) * cell_inches), dpi=80)
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (title, images) in zip(axes, rows):
        tiles = [(np.clip(img, -1, 1) + 1) / 2 for img in images]
        strip = np.concatenate([t.transpose(1, 2, 0) for t in tiles], axis=1)
        ax.imshow(
            strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(title, rotation=0, ha="right", va="center", fontsize=7)
    figure.subplots_adjust(left=margin / width, right=1 - 0.05 / width, top=0.99, bottom=0.01, hspace=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the points not dominated in (speedup up, metric up or down), by speedup.

    A point dominates another if it is at least as good in both and better in one.
    Example: [(1, 40), (2, 35), (1.5, 30)] with higher_is_better -> [0, 1].
    """
    sign = 1.0 if higher_is_better else -1.0
    front = []
    for i, (s_i, m_i) in enumerate(points):
        dominated = any(
            s_j >= s_i and sign * m_j >= sign * m_i and (s_j > s_i or sign * m_j > sign * m_i)
            for j, (s_j, m_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(records: Sequence[dict[str, Any]], metric: str, higher_is_better: bool, path: Path, title: str) -> None:
    """Speedup (x) against ``metric`` (y), one colour per method, the Pareto front joined.

    Infinite values (identical outputs: PSNR ``inf``) are drawn at the top of the axis, at
    the largest finite value + 10%, with an upward marker. Records without ``speedup`` or
    ``metric`` (errors) are left out.

    Raises:
        ValueError: no record has both values.
    """
    from matplotlib.figure import Figure

    usable = [
        r for r in records if isinstance(r.get("speedup"), (int, float)) and isinstance(r.get(metric), (int, float))
    ]
    if not usable:
        raise ValueError(f"no records with speedup and {metric}")
    finite = [r[metric] for r in usable if math.isfinite(r[metric])]
    cap = (
        (max(finite) * 1.1 if finite and max(finite) > 0 else 1.0)
        if any(not math.isfinite(r[metric]) for r in usable)
        else None
    )
    points = [(float(r["speedup"]), float(r[metric]) if math.isfinite(r[metric]) else cap) for r in usable]
    figure = Figure(figsize=(6.4, 4.2), dpi=90)
    ax = figure.add_subplot()
    methods = list(dict.fromkeys(r["method"] for r in usable))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for (s, m), r in zip(points, usable):
        marker = "^" if not math.isfinite(r[metric]) else "o"
        ax.scatter(
            [s],
            [m],
            color=colours[r["method"]],
            marker=marker,
            s=28,
            label=r["method"] if r["method"] not in ax.get_legend_handles_labels()[1] else None,
        )
    front = pareto_front(points, higher_is_better)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="0.5", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("speedup vs uncached (same run)")
    ax.set_ylabel(metric + (" (inf drawn at top)" if cap is not None else ""))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def grouped_bars(
    path: Path,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    ylabel: str,
    title: str,
    level: float | None = None,
    level_label: str = "level",
) -> None:
    """One bar per series in each group (e.g. speedup per subtask, one colour per method),
    a dashed line at 1.0, and an optional ``level`` (an upper bound such as the oracle
    speedup) drawn as a marker over every group when within twice the highest bar, else
    named in the corner instead of squashing the bars.

    Args:
        path: the PNG to write. groups: x-axis labels. series: name -> one value per group.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.2 * len(groups) + 3.5), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    highest = 1.0
    for i, (name, values) in enumerate(series.items()):
        highest = max(highest, *values)
        ax.bar([g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))], values, width, label=name)
    if level is not None and level <= 2 * highest:
        ax.scatter(
            range(len(groups)),
            [level] * len(groups),
            marker="_",
            s=900,
            color="black",
            label=f"{level_label} ({level:.2f}x)",
            zorder=3,
        )
    elif level is not None:  # far above the bars: name it instead of squashing them
        ax.set_ylim(0, 1.25 * highest)
        ax.text(
            0.01, 0.97, f"{level_label}: {level:.2f}x, above this scale", transform=ax.transAxes, va="top", fontsize=8
        )
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def scatter_plot(
    path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str, title: str
) -> None:
    """One colour per series of (x values, y values); empty series are left out."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        if len(xs):
            ax.scatter(list(xs), list(ys), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
