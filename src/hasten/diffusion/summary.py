"""What a cache did: block evaluations per step and per block, and measured residual diffs.

A *block evaluation* is one block of one denoiser call; it was computed, reused,
forecast or bypassed (see :class:`hasten.diffusion.policy.Action`). The skipped fraction
is the share of block evaluations that were not computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hasten.diffusion.policy import Action

PERCENTILES = (25, 50, 75, 95)


@dataclass(frozen=True)
class ActionCounts:
    """Block evaluations by action."""

    computed: int = 0
    reused: int = 0
    forecast: int = 0
    bypassed: int = 0

    @property
    def total(self) -> int:
        return self.computed + self.reused + self.forecast + self.bypassed

    @property
    def skipped(self) -> int:
        """Evaluations that did not run the block."""
        return self.total - self.computed


@dataclass(frozen=True)
class CacheSummary:
    """A snapshot of one cache handle's activity since it was enabled (or since ``reset_stats``).

    Attributes:
        method: the policy name (``"static"``, ``"first_block"``, ...).
        block_names: dotted block names, in call order.
        per_step: counts summed over lanes and runs, indexed by denoising step index.
        per_block: counts summed over all calls, indexed like ``block_names``.
        residual_diffs: every residual diff (relative L1, a fraction) the method measured,
            in order; empty for methods that measure none (static, delta_dit, taylorseer).
        calls: denoiser calls seen. runs: lane restarts (a batched-CFG run counts once,
            separate cond/uncond calls count once per branch).
    """

    method: str
    block_names: tuple[str, ...]
    per_step: tuple[ActionCounts, ...]
    per_block: tuple[ActionCounts, ...]
    residual_diffs: tuple[float, ...]
    calls: int
    runs: int

    @property
    def totals(self) -> ActionCounts:
        return ActionCounts(
            sum(c.computed for c in self.per_block),
            sum(c.reused for c in self.per_block),
            sum(c.forecast for c in self.per_block),
            sum(c.bypassed for c in self.per_block),
        )

    @property
    def skipped_fraction(self) -> float:
        """Fraction (0-1) of block evaluations not computed; 0 before any call."""
        totals = self.totals
        return totals.skipped / totals.total if totals.total else 0.0

    def percentiles(self) -> dict[int, float]:
        """P25/P50/P75/P95 of ``residual_diffs`` (linear interpolation); empty when none were measured."""
        finite = [v for v in self.residual_diffs if np.isfinite(v)]
        if not finite:
            return {}
        return {p: float(np.percentile(finite, p)) for p in PERCENTILES}

    def __str__(self) -> str:
        t = self.totals
        lines = [
            f"hasten.diffusion cache: {self.method} | {self.calls} denoiser calls, {self.runs} runs | "
            f"block evaluations: {t.total} = {t.computed} computed + {t.reused} reused + "
            f"{t.forecast} forecast + {t.bypassed} bypassed ({100 * self.skipped_fraction:.1f}% skipped)",
        ]
        pct = self.percentiles()
        if pct:
            values = "  ".join(f"P{p} {v:.4f}" for p, v in pct.items())
            lines.append(f"residual diff (relative L1, n={len(self.residual_diffs)}): {values}")
        else:
            lines.append("residual diff: not measured by this method")
        lines.append("step  computed  reused  forecast  bypassed")
        lines += [
            f"{i:>4}  {c.computed:>8}  {c.reused:>6}  {c.forecast:>8}  {c.bypassed:>8}"
            for i, c in enumerate(self.per_step)
        ]
        lines.append("block" + " " * 27 + "computed  skipped")
        lines += [f"{n:<32}{c.computed:>8}  {c.skipped:>7}" for n, c in zip(self.block_names, self.per_block)]
        return "\n".join(lines)


@dataclass
class CacheStats:
    """Mutable counters behind :class:`CacheSummary`; owned by one cache handle. ``reset()`` zeroes them."""

    num_blocks: int
    steps: list[dict[Action, int]] = field(default_factory=list)
    blocks: list[dict[Action, int]] = field(default_factory=list)
    residual_diffs: list[float] = field(default_factory=list)
    calls: int = 0
    runs: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps = []
        self.blocks = [dict.fromkeys(Action, 0) for _ in range(self.num_blocks)]
        self.residual_diffs = []
        self.calls = 0
        self.runs = 0

    def record(self, step: int, block: int, action: Action) -> None:
        while len(self.steps) <= step:
            self.steps.append(dict.fromkeys(Action, 0))
        self.steps[step][action] += 1
        self.blocks[block][action] += 1

    def snapshot(self, method: str, block_names: tuple[str, ...]) -> CacheSummary:
        def counts(d: dict[Action, int]) -> ActionCounts:
            return ActionCounts(d[Action.COMPUTE], d[Action.REUSE], d[Action.FORECAST], d[Action.BYPASS])

        return CacheSummary(
            method=method,
            block_names=block_names,
            per_step=tuple(counts(d) for d in self.steps),
            per_block=tuple(counts(d) for d in self.blocks),
            residual_diffs=tuple(self.residual_diffs),
            calls=self.calls,
            runs=self.runs,
        )
