"""static: recompute every N steps, reuse block outputs in between (FORA).

"FORA: Fast-Forward Caching in Diffusion Transformer Acceleration" (Selvaraju et al.,
arXiv 2407.01425). FORA caches attention and MLP outputs and reuses them for N-1 steps;
here the unit is a whole block: on a cache refresh step every block runs and its residual
(output - input, see :mod:`hasten.diffusion.features`) is stored; on a reuse step every
block returns ``current input + stored residual`` without running. Blocks without a
residual (UNet blocks that change resolution) reuse their stored output.

Schedule, with step = denoising step index in the run (0-based):
refresh if ``step < warmup_steps`` or ``(step - warmup_steps) % interval == 0``.
Example: ``interval=3, warmup_steps=2`` over 10 steps refreshes at 0, 1, 2, 5, 8.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.policy import Action, CachePolicy, FeatureStore, register_policy


@dataclass(frozen=True)
class StaticCacheConfig:
    """FORA-style fixed-interval block caching.

    Attributes:
        interval: steps between cache refreshes (>= 1). 1 = compute every step (uncached);
            larger = faster, lower fidelity.
        warmup_steps: steps computed in full at the start of each run (>= 0), when
            features change fastest. More = slower, closer to the uncached output.
    """

    interval: int = 3
    warmup_steps: int = 1

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


class StaticCache(CachePolicy):
    """Refresh all blocks every ``interval`` steps; reuse every block's stored feature otherwise."""

    name = "static"

    def __init__(self, config: StaticCacheConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.interval = config.interval
        self.warmup_steps = config.warmup_steps

    def new_state(self) -> FeatureStore:
        return FeatureStore()

    def observes(self, block: int) -> bool:
        return self.interval > 1

    def is_refresh_step(self, step: int) -> bool:
        return step < self.warmup_steps or (step - self.warmup_steps) % self.interval == 0

    def decide(self, state: FeatureStore, step: int, block: int) -> Action:
        return Action.COMPUTE if self.is_refresh_step(step) else Action.REUSE

    def on_compute(self, state: FeatureStore, step: int, block: int, feature: Feature) -> None:
        state.features[block] = feature

    def approximate(self, state: FeatureStore, step: int, block: int) -> Feature | None:
        return state.features.get(block)


register_policy(StaticCacheConfig, StaticCache)
