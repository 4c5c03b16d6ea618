"""A progress bar with ETA on stderr (tqdm when installed), or a silent stand-in.

Both have ``update(n)``, ``set_postfix_str(text)``, ``close()`` and work as context managers,
so bench loops never branch on whether a bar is shown.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar", "NullBar"]


class NullBar:
    """The bar's interface, doing nothing (progress off, or tqdm missing)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(
    total: int, initial: int = 0, *, enabled: bool = True, unit: str = "it", desc: str | None = None
) -> Any:
    """A tqdm bar on stderr starting at ``initial`` of ``total`` (resumed work counts as
    done), or a :class:`NullBar` when ``enabled`` is False or tqdm is not installed."""
    if not enabled:
        return NullBar()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the bench extra; without it, no bar
        return NullBar()
    return tqdm(total=total, initial=min(initial, total), unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
