"""Report building blocks: markdown tables, aligned text tables, number cells.

A family's report module turns its records into rows of strings and hands them here, so
every ``report.md`` looks alike and a new bench writes no table code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown_table", "text_table", "number", "rate", "MISSING"]

MISSING = "—"  # a cell with no value (no records, or not applicable)


def number(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    """A number cell: ``value`` formatted by ``spec`` plus ``suffix``; :data:`MISSING` for
    anything that is not a number; non-finite values as ``inf`` / ``-inf`` / ``nan``.

    Example: (1.234, ".1f", "x") -> "1.2x"; (None,) -> "—"; (inf, ".1f") -> "inf";
    (0.25, ".1%") -> "25.0%".
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return f"{value:{spec}}{suffix}"


def rate(hits: int, total: int) -> str:
    """A fraction cell. Example: (3, 4) -> "75% (3/4)"; (0, 0) -> "—"."""
    return MISSING if not total else f"{100 * hits / total:.0f}% ({hits}/{total})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table as lines.

    Args:
        header: column titles. rows: cells, as strings.
        align: one letter per column, ``l`` (``---``) or ``r`` (``---:``); columns past its
            end are ``l``.

    Example: (["a", "b"], [["1", "2"]], "lr") -> ["| a | b |", "|---|---:|", "| 1 | 2 |"].
    """
    marks = ["---:" if i < len(align) and align[i] == "r" else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart (for the terminal).

    Example: (["a", "bb"], [["ccc", "d"]]) -> ["a    bb", "ccc  d"].
    """
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
