"""first_block: adaptive probe caching (First Block Cache, TeaCache, DBCache family).

"Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model" (TeaCache,
Liu et al., arXiv 2411.19108) showed that how much a denoiser's output changes between
steps can be read off cheap early signals. First Block Cache (ParaAttention) uses the
first block's residual as that signal; DBCache (cache-dit) generalises it to Fn probe
blocks in front and Bn always-computed blocks at the back.

Each step: run the first ``probe_blocks`` blocks (Fn) and measure the residual diff

    d = max over samples of  sum|r - r_ref| / sum|r_ref|

where r is the probe blocks' residuals (outputs where a block has none) and r_ref the
same at the last cache refresh step. If ``d < threshold`` (and warm-up is over and fewer
than ``max_consecutive_reuses`` steps in a row were reused) the middle blocks reuse their
stored residuals; otherwise they run, and this step becomes the new reference. The last
``tail_blocks`` blocks (Bn) always run. Because r_ref is only replaced on refresh, small
per-step changes add up until a refresh happens. Threshold 0 never reuses, and the
measured d are then the step-to-step residual diffs: run once at 0, read
``handle.summary()`` percentiles, pick a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.metrics import feature_relative_l1
from hasten.diffusion.policy import Action, CachePolicy, register_policy


@dataclass(frozen=True)
class FirstBlockCacheConfig:
    """Adaptive first-block (probe) caching.

    Attributes:
        threshold: residual diff (relative L1, a fraction) below which the middle blocks
            are reused (>= 0). 0 = never reuse (uncached); larger = faster, lower fidelity.
            Typical trained DiTs: 0.05-0.2.
        probe_blocks: Fn, front blocks always computed and compared (>= 1). More = a more
            reliable signal, less saved per reuse.
        tail_blocks: Bn, back blocks always computed (>= 0). More = better detail, less saved.
        warmup_steps: steps at the start of each run that never reuse (>= 0).
        max_consecutive_reuses: cap on reuse steps in a row (>= 1), None = no cap.
            Smaller = slower, bounded drift.
    """

    threshold: float = 0.08
    probe_blocks: int = 1
    tail_blocks: int = 0
    warmup_steps: int = 1
    max_consecutive_reuses: int | None = None

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.probe_blocks < 1:
            raise ValueError(f"probe_blocks must be >= 1, got {self.probe_blocks}")
        if self.tail_blocks < 0:
            raise ValueError(f"tail_blocks must be >= 0, got {self.tail_blocks}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_consecutive_reuses is not None and self.max_consecutive_reuses < 1:
            raise ValueError(f"max_consecutive_reuses must be >= 1 or None, got {self.max_consecutive_reuses}")


class FirstBlockState:
    """Per-lane state: probe features now and at the last refresh, middle residuals, reuse streak."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.probe: dict[int, Feature] = {}
        self.reference: Feature | None = None
        self.middle: dict[int, Feature] = {}
        self.consecutive_reuses = 0
        self.reuse_now = False


class FirstBlockCache(CachePolicy):
    """Compute Fn probe blocks, reuse the middle when their residual barely moved, compute Bn tail blocks."""

    name = "first_block"
    traceable = False  # dynamo fails on `block in self.middle` with a symbolic block index

    def __init__(self, config: FirstBlockCacheConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        if config.probe_blocks + config.tail_blocks >= num_blocks:
            raise ValueError(
                f"probe_blocks + tail_blocks = {config.probe_blocks + config.tail_blocks} leaves no middle "
                f"block to cache in a denoiser with {num_blocks} blocks"
            )
        self.config = config
        self.middle = range(config.probe_blocks, num_blocks - config.tail_blocks)

    def new_state(self) -> FirstBlockState:
        return FirstBlockState()

    def observes(self, block: int) -> bool:
        return block < self.config.probe_blocks or (self.config.threshold > 0 and block in self.middle)

    def begin_step(self, state: FirstBlockState, step: int) -> None:
        state.reuse_now = False
        state.probe = {}

    def decide(self, state: FirstBlockState, step: int, block: int) -> Action:
        return Action.REUSE if state.reuse_now and block in self.middle else Action.COMPUTE

    def on_compute(self, state: FirstBlockState, step: int, block: int, feature: Feature) -> float | None:
        if block in self.middle:
            state.middle[block] = feature
            return None
        state.probe[block] = feature
        if block != self.config.probe_blocks - 1 or len(state.probe) != self.config.probe_blocks:
            return None
        current = tuple(t for b in sorted(state.probe) for t in state.probe[b])
        measured = feature_relative_l1(state.reference, current) if state.reference is not None else None
        state.reuse_now = measured is not None and self._may_reuse(state, step, measured)
        if state.reuse_now:
            state.consecutive_reuses += 1
        else:
            state.reference, state.consecutive_reuses = current, 0
        return measured

    def _may_reuse(self, state: FirstBlockState, step: int, measured: float) -> bool:
        cap = self.config.max_consecutive_reuses
        return (
            step >= self.config.warmup_steps
            and measured < self.config.threshold
            and (cap is None or state.consecutive_reuses < cap)
            and all(b in state.middle for b in self.middle)
        )

    def approximate(self, state: FirstBlockState, step: int, block: int) -> Feature | None:
        return state.middle.get(block)


register_policy(FirstBlockCacheConfig, FirstBlockCache)
