"""example_every_other: a one-file diffusion cache method (test-only example of adding one).

On odd denoising steps every block returns its input plus the residual stored on the
previous (even) step; even steps compute every block. ``period=1`` computes every step
(reuses nothing), which is what the cache contract's exact case checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.policy import Action, CachePolicy, FeatureStore, register_policy


@dataclass(frozen=True)
class EveryOtherConfig:
    """Attributes: period: compute on steps divisible by ``period`` (>= 1), reuse otherwise."""

    period: int = 2

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"period must be >= 1, got {self.period}")


class EveryOtherCache(CachePolicy):
    """Compute every ``period``-th step, reuse each block's stored residual in between."""

    name = "example_every_other"

    def __init__(self, config: EveryOtherConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.period = config.period

    @classmethod
    def contract_configs(cls, num_blocks: int, num_steps: int) -> tuple[EveryOtherConfig, EveryOtherConfig]:
        return EveryOtherConfig(period=1), EveryOtherConfig(period=2)

    def new_state(self) -> FeatureStore:
        return FeatureStore()

    def observes(self, block: int) -> bool:
        return self.period > 1

    def decide(self, state: FeatureStore, step: int, block: int) -> Action:
        return Action.COMPUTE if step % self.period == 0 else Action.REUSE

    def on_compute(self, state: FeatureStore, step: int, block: int, feature: Feature) -> None:
        state.features[block] = feature

    def approximate(self, state: FeatureStore, step: int, block: int) -> Feature | None:
        return state.features.get(block)


register_policy(EveryOtherConfig, EveryOtherCache)
