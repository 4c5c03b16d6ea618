"""PNG figures of ``hasten bench-diffusion``: sample grids and speedup/fidelity Pareto plots.

Uses matplotlib's object API (``matplotlib.figure.Figure``, no global pyplot state), so it
works headless and in parallel test workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_rows", "pareto_front", "pareto_plot"]


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
