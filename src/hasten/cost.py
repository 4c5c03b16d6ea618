"""Measured cost of a target forward as a function of how many tokens it verifies.

Verifying N tokens is not free on a CPU (fp32 SmolLM2 here: ~45 ms for 1 token, ~100 ms
for 8), and the curve differs per dtype and machine, so it is measured, never assumed.
The curve feeds draft sizing (how many nodes pay for themselves) and the *oracle speedup*
(what a drafter that is always right would reach on this hardware).

Units: seconds per forward; sizes in tokens (root + draft nodes).
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import kv

__all__ = [
    "CostCurve",
    "time_sizes",
    "measure_forward_cost",
    "load_or_measure",
    "default_cost_cache_path",
    "implausible_reason",
]

DEFAULT_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
MAX_AGE_DAYS = 30  # a cached curve older than this is measured again (drivers, libraries, load change)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CostCurve:
    """Seconds per target forward at each measured size (tokens fed to the forward).

    Attributes:
        sizes: ascending token counts, starting at 1.
        seconds: median seconds per forward at each size.
    """

    sizes: tuple[int, ...]
    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.sizes or self.sizes[0] != 1 or list(self.sizes) != sorted(self.sizes):
            raise ValueError("sizes must be ascending and start at 1")
        if len(self.sizes) != len(self.seconds):
            raise ValueError("one time per size")

    def cost(self, size: int) -> float:
        """Seconds for a forward over ``size`` tokens (linear interpolation; linear
        extrapolation from the last two points beyond the largest size)."""
        if size <= self.sizes[0]:
            return self.seconds[0]
        for (s0, t0), (s1, t1) in zip(zip(self.sizes, self.seconds), zip(self.sizes[1:], self.seconds[1:])):
            if size <= s1:
                return t0 + (t1 - t0) * (size - s0) / (s1 - s0)
        (s0, t0), (s1, t1) = (
            list(zip(self.sizes, self.seconds))[-2:] if len(self.sizes) > 1 else ((1, self.seconds[0]),) * 2
        )
        slope = (t1 - t0) / (s1 - s0) if s1 != s0 else 0.0
        return t1 + slope * (size - s1)

    def relative(self, size: int) -> float:
        """Cost of a ``size``-token forward in units of a 1-token forward."""
        return self.cost(size) / self.seconds[0]

    def oracle_speedup(self, max_draft: int | None = None) -> tuple[float, int]:
        """Best speedup over plain decoding a drafter that is always right could reach:
        max over k of (k + 1) / relative(k + 1), k <= max_draft (default: measured range).

        Returns:
            (speedup, best draft length k).

        Example: costs 1 token 45 ms, 8 tokens 100 ms -> k=7 gives 8 / (100/45) = 3.6x.
        """
        top = max_draft if max_draft is not None else self.sizes[-1] - 1
        best = max(((k + 1) / self.relative(k + 1), k) for k in range(0, top + 1))
        return best

    def to_json(self) -> dict:
        return {"sizes": list(self.sizes), "seconds": list(self.seconds)}

    @classmethod
    def from_json(cls, data: dict) -> "CostCurve":
        return cls(tuple(data["sizes"]), tuple(data["seconds"]))


def time_sizes(timed_forward: Callable[[int], float], sizes, repeats: int = 5) -> tuple[float, ...]:
    """Median seconds per size of ``timed_forward(size)`` (which runs one forward over
    ``size`` tokens and returns its own elapsed seconds), timed in rounds that visit every
    size once, in alternating directions, after one untimed warm-up round.

    Interleaving matters on a shared CPU: timing each size's repeats back to back lets a
    slow spell (clock change, a background job) land on a few neighbouring sizes and bend
    the curve (a measured 16-token forward slower than a 32-token one), which then
    misleads draft sizing and the oracle; in rounds, drift hits every size alike.

    Raises:
        ValueError: ``repeats`` < 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sizes = list(sizes)
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for round_ in range(repeats + 1):
        for size in sizes if round_ % 2 == 0 else reversed(sizes):
            elapsed = timed_forward(size)
            if round_:
                times[size].append(elapsed)
    return tuple(statistics.median(times[size]) for size in sizes)


def measure_forward_cost(
    model: torch.nn.Module, sizes=DEFAULT_SIZES, context: int = 256, repeats: int = 5
) -> CostCurve:
    """Time target forwards over ``size`` new tokens on a ``context``-token KV cache
    (rounds over all sizes, see :func:`time_sizes`).

    Args:
        model: the target causal LM.
        sizes: token counts to measure (ascending, first 1).
        context: cached tokens before each measured forward.
        repeats: timed forwards per size (the median is kept), after one warm-up round.

    Returns:
        :class:`CostCurve`.
    """
    device = next(model.parameters()).device
    vocab = model.get_output_embeddings().weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, vocab, (1, context), generator=gen).to(device)
    inputs = {size: torch.randint(0, vocab, (1, size), generator=gen).to(device) for size in sizes}
    kw = kv.cache_kwarg(model)
    with torch.inference_mode():
        cache = kv.new_cache(model)
        model(input_ids=prefix, use_cache=True, **{kw: cache})

        def timed_forward(size: int) -> float:
            start = time.perf_counter()
            model(input_ids=inputs[size], use_cache=True, **{kw: cache})
            elapsed = time.perf_counter() - start
            kv.rollback(cache, context)
            return elapsed

        seconds = time_sizes(timed_forward, sizes, repeats)
    return CostCurve(tuple(sizes), seconds)


def default_cost_cache_path() -> Path:
    """``<user cache>/hasten/cost.json``: where :func:`load_or_measure` keeps curves by default."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hasten")) / "cost.json"


def implausible_reason(curve: CostCurve) -> str | None:
    """Why a measured curve cannot be right, or None.

    A forward over more tokens does the work of a 1-token forward and more, so no size may
    cost less than half of size 1 (a curve measured while the machine was busy at size 1
    and quiet later looks like that); every time must be finite and positive.

    Example: seconds (0.05, 0.06, 0.01) -> "size 3 costs 0.2x a 1-token forward".
    """
    if not all(math.isfinite(t) and t > 0 for t in curve.seconds):
        return "a time that is not a positive number"
    for size, seconds in zip(curve.sizes, curve.seconds):
        if seconds < 0.5 * curve.seconds[0]:
            return f"size {size} costs {seconds / curve.seconds[0]:.1f}x a 1-token forward"
    return None


def _fingerprint(model: torch.nn.Module, context: int) -> str:
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    return (
        f"{cfg.model_type}-{params}-{dtype}-ctx{context}-threads{torch.get_num_threads()}-"
        f"{platform.machine()}-{os.cpu_count()}cpu-torch{torch.__version__}"
    )


def load_or_measure(
    model: torch.nn.Module,
    cache_file: Path | None = None,
    context: int = 256,
    sizes=DEFAULT_SIZES,
    refresh: bool = False,
) -> CostCurve:
    """The cost curve for this model (a torch module or a backend model such as
    :class:`hasten.backends.llamacpp.LlamaCppModel`), dtype, thread count and machine, measured once and
    cached as JSON (``cache_file`` defaults to :func:`default_cost_cache_path`; written
    atomically). ``refresh`` measures now and replaces the cached curve (one measured
    while the machine was busy sizes drafts wrongly until replaced). A cached curve that is
    implausible (:func:`implausible_reason`) or older than ``MAX_AGE_DAYS`` is measured
    again. Every measurement is announced with a warning on the ``hasten.cost`` logger
    (it runs about 60 forwards, seconds to minutes on a large model)."""
    backend = hasattr(model, "measure_cost")  # a backend model (hasten.backends), not a torch module
    if backend:
        limit = model.context_length
    else:
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None:  # a short learned-position context (GPT-2 style): measure only what fits
        sizes = tuple(size for size in sizes if size <= limit - 2) or (1,)
        context = max(1, min(context, limit - max(sizes) - 1))
    if cache_file is None:
        cache_file = default_cost_cache_path()
    key = model.cost_fingerprint(context) if backend else _fingerprint(model, context)
    table = {}
    if cache_file.is_file():
        try:
            table = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            table = {}
    why = "refresh requested" if refresh else _stale_reason(table.get(key), sizes)
    if why is None:
        return CostCurve.from_json(table[key])
    _log.warning(
        "hasten: measuring the forward cost of this model once (%s; %d sizes, up to %d tokens); cached in %s",
        why,
        len(sizes),
        max(sizes),
        cache_file,
    )
    curve = model.measure_cost(sizes, context) if backend else measure_forward_cost(model, sizes, context)
    table[key] = {**curve.to_json(), "measured_at": time.time()}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=1)
    os.replace(tmp, cache_file)
    return curve


def _stale_reason(entry: dict | None, sizes) -> str | None:
    """Why a cached table entry must be measured again, or None to use it."""
    if entry is None:
        return "no cached curve"
    try:
        curve = CostCurve.from_json(entry)
    except (KeyError, TypeError, ValueError):
        return "the cached curve is malformed"
    if tuple(curve.sizes) != tuple(sizes):
        return "the cached curve has other sizes"
    implausible = implausible_reason(curve)
    if implausible is not None:
        return f"the cached curve is implausible: {implausible}"
    age_days = (time.time() - entry.get("measured_at", 0.0)) / 86400
    if age_days > MAX_AGE_DAYS:
        return f"the cached curve is older than {MAX_AGE_DAYS} days"
    return None
