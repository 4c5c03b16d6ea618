"""Is this machine quiet enough for the timings to mean something? Warnings, never failures.

Speedups are ratios of wall-clock times measured in one run; on a machine busy with other
work they can come out as nonsense (0.14x) with nothing to show why. Two cheap checks:

* **load**: the 1-minute load average against the CPU count (other processes competing
  for the cores this run uses);
* **cost drift**: a 1-token and an 8-token forward timed now (3 rounds, medians) against
  the cached cost curve that draft sizing and the oracle use; a ratio outside
  ``[1 / DRIFT, DRIFT]`` means either the cached curve or this run's timings were taken
  under different load.

Units: seconds; ratios are now / cached.
"""

from __future__ import annotations

import os

__all__ = ["DRIFT", "cost_drift_warning", "load_warning", "timing_warnings"]

DRIFT = 1.5


def load_warning(threads: int | None = None) -> str | None:
    """A sentence when the 1-minute load average exceeds the cores left for this run, else None."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return None
    cores = os.cpu_count() or 1
    if load > cores + 0.5:
        return (
            f"load average {load:.1f} on {cores} cores: other processes compete for the CPU, "
            "so timings (and speedups) are unreliable; rerun on a quiet machine"
        )
    return None


def cost_drift_warning(model, curve, sizes=(1, 8), repeats: int = 3) -> str | None:
    """Time ``sizes`` now and compare with ``curve`` (a :class:`hasten.cost.CostCurve`);
    a sentence when a ratio leaves ``[1 / DRIFT, DRIFT]``, else None."""
    from ..cost import measure_forward_cost

    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
    sizes = tuple(s for s in sizes if s <= limit - 2) or (1,)
    context = max(1, min(256, limit - max(sizes) - 1))
    now = measure_forward_cost(model, sizes, context, repeats)
    ratios = {size: seconds / curve.cost(size) for size, seconds in zip(now.sizes, now.seconds)}
    off = {size: r for size, r in ratios.items() if not 1 / DRIFT <= r <= DRIFT}
    if not off:
        return None
    shown = ", ".join(f"{size} tokens {r:.2f}x" for size, r in off.items())
    return (
        f"forward times now differ from the cached cost curve ({shown}): the machine's load changed, "
        "so timings are unreliable; rerun on a quiet machine (--fresh-cost re-measures the curve)"
    )


def timing_warnings(model=None, curve=None) -> list[str]:
    """The warnings that apply now: load, and cost drift when a torch ``model`` and its ``curve`` are given."""
    found = [load_warning()]
    if model is not None and curve is not None and not hasattr(model, "measure_cost"):
        found.append(cost_drift_warning(model, curve))
    return [w for w in found if w]
