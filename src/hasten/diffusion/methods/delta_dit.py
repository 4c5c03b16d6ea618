"""delta_dit: cache rear blocks early, front blocks late (Δ-DiT).

"Δ-DiT: A Training-Free Acceleration Method Tailored for Diffusion Transformers"
(Chen et al., arXiv 2406.01125). Front blocks shape the outline of the image, rear blocks
its details, and the outline is settled early. So in early steps (step index below
``switch_step``) the *rear* blocks are skipped and their Δ (output - input, the block
residual) from the last step they ran is added to their current input; from
``switch_step`` on the *front* blocks are skipped that way while the rear ones run. Every
``interval`` steps all blocks run and refresh their Δ.

With L blocks and k = max(1, floor(cached_fraction * L)): early non-refresh steps skip
blocks [L-k, L), late non-refresh steps skip blocks [0, k). Example: L=8,
``cached_fraction=0.25, interval=2, switch_step=4``: steps 1 and 3 skip blocks 6-7,
steps 5 and 7 skip blocks 0-1, even steps run all blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.policy import Action, CachePolicy, FeatureStore, register_policy


@dataclass(frozen=True)
class DeltaDiTConfig:
    """Δ-DiT stage-wise block caching.

    Attributes:
        interval: steps between full refreshes (>= 1). 1 = compute every step
            (uncached); larger = faster, lower fidelity.
        switch_step: the denoising step index at which caching moves from the rear to the
            front blocks (>= 0; the paper's boundary b, here as a step index). Earlier =
            fidelity risk moves to the outline, later = to the details.
        cached_fraction: fraction of the blocks skipped on non-refresh steps (0 < f <= 1;
            at least one block). Larger = faster, lower fidelity.
    """

    interval: int = 2
    switch_step: int = 10
    cached_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")
        if self.switch_step < 0:
            raise ValueError(f"switch_step must be >= 0, got {self.switch_step}")
        if not 0 < self.cached_fraction <= 1:
            raise ValueError(f"cached_fraction must be in (0, 1], got {self.cached_fraction}")


class DeltaDiT(CachePolicy):
    """Skip the rear k blocks before ``switch_step`` and the front k after, between refreshes."""

    name = "delta_dit"

    def __init__(self, config: DeltaDiTConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.interval = config.interval
        self.switch_step = config.switch_step
        self.num_cached = max(1, math.floor(config.cached_fraction * num_blocks))

    def new_state(self) -> FeatureStore:
        return FeatureStore()

    def observes(self, block: int) -> bool:
        return self.interval > 1 and (block < self.num_cached or block >= self.num_blocks - self.num_cached)

    def cached_blocks(self, step: int) -> range:
        """The blocks skipped at a non-refresh ``step``."""
        if step < self.switch_step:
            return range(self.num_blocks - self.num_cached, self.num_blocks)
        return range(0, self.num_cached)

    def decide(self, state: FeatureStore, step: int, block: int) -> Action:
        if step % self.interval == 0 or block not in self.cached_blocks(step):
            return Action.COMPUTE
        return Action.REUSE

    def on_compute(self, state: FeatureStore, step: int, block: int, feature: Feature) -> None:
        state.features[block] = feature

    def approximate(self, state: FeatureStore, step: int, block: int) -> Feature | None:
        return state.features.get(block)


register_policy(DeltaDiTConfig, DeltaDiT)
