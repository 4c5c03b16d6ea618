"""Interleaved timing: measure contenders back to back so machine drift hits all alike.

Two shapes, both used by every family's bench:

* :func:`rotated`: many contenders per item (an LLM question turn), the order rotating
  from one item to the next.
* :func:`interleaved_pairs`: one method against its baseline (a diffusion setting against
  uncached), ``repeats`` pairs with the order alternating; the figure published is the
  ratio of the fastest calls (:func:`speedup_of_fastest`).

Never assert on timings in tests; publish ratios measured side by side in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["rotated", "interleaved_pairs", "speedup_of_fastest"]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` rotated left by ``shift`` (mod its length).

    Example: ["a", "b", "c"], 4 -> ["b", "c", "a"].
    """
    k = shift % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def interleaved_pairs(baseline: Callable[[], A], method: Callable[[], B], repeats: int) -> tuple[list[A], list[B]]:
    """Call ``baseline`` and ``method`` in ``repeats`` pairs, baseline first in even pairs
    and method first in odd ones; returns (baseline results, method results) in call order.

    Example: repeats=3 calls baseline, method, method, baseline, baseline, method.

    Raises:
        ValueError: ``repeats < 1``. Whatever the calls raise.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    base_results: list[A] = []
    method_results: list[B] = []
    for pair in range(repeats):
        order = ("base", "method") if pair % 2 == 0 else ("method", "base")
        for which in order:
            if which == "base":
                base_results.append(baseline())
            else:
                method_results.append(method())
    return base_results, method_results


def speedup_of_fastest(baseline_seconds: Sequence[float], method_seconds: Sequence[float]) -> float:
    """Fastest baseline call over fastest method call (``inf`` when the method took 0 s).

    Example: ([2.0, 1.8], [1.0, 0.9]) -> 2.0.

    Raises:
        ValueError: an empty sequence.
    """
    if not baseline_seconds or not method_seconds:
        raise ValueError("need at least one timed call of each")
    fastest = min(method_seconds)
    return min(baseline_seconds) / fastest if fastest > 0 else float("inf")
