"""taylorseer: full compute every N steps, Taylor-forecast features in between.

"From Reusing to Forecasting: Accelerating Diffusion Models with TaylorSeers"
(Liu et al., arXiv 2503.06923). Instead of reusing a cached feature unchanged, keep its
finite-difference derivatives (up to ``order``) from the last full computations and
extrapolate it to the current step (:mod:`hasten.diffusion.forecast`). Here the feature is
each block's residual (output - input; the output for blocks without one), so on a
forecast step block i returns ``current input + forecast residual`` without running.

Schedule, with step = denoising step index in the run:
full compute if ``step < warmup_steps`` or ``(step - warmup_steps) % interval == 0``,
otherwise forecast. Example: ``interval=4, warmup_steps=2`` over 10 steps computes at
0, 1, 2, 6 and forecasts 3, 4, 5, 7, 8, 9.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.forecast import TaylorTrack
from hasten.diffusion.policy import Action, CachePolicy, register_policy


@dataclass(frozen=True)
class TaylorSeerConfig:
    """TaylorSeer block-feature forecasting.

    Attributes:
        interval: steps between full computations (>= 1). 1 = compute every step
            (uncached); larger = faster, lower fidelity.
        order: highest derivative order of the forecast (0, 1 or 2). 0 = reuse the last
            feature (FORA); higher follows curved trajectories, but amplifies noise when
            ``interval`` is large.
        warmup_steps: steps computed in full at the start of each run (>= 0); they also
            seed the derivatives.
    """

    interval: int = 4
    order: int = 2
    warmup_steps: int = 3

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1, got {self.interval}")
        if self.order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {self.order}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


class TaylorSeerState:
    """Per-lane Taylor factors of every block; ``reset()`` empties them."""

    def __init__(self, num_blocks: int, order: int) -> None:
        self.tracks = [TaylorTrack(order) for _ in range(num_blocks)]

    def reset(self) -> None:
        for track in self.tracks:
            track.reset()


class TaylorSeer(CachePolicy):
    """Compute all blocks every ``interval`` steps and forecast each block's residual in between."""

    name = "taylorseer"

    def __init__(self, config: TaylorSeerConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        self.interval = config.interval
        self.order = config.order
        self.warmup_steps = config.warmup_steps

    def new_state(self) -> TaylorSeerState:
        return TaylorSeerState(self.num_blocks, self.order)

    def observes(self, block: int) -> bool:
        return self.interval > 1

    def is_full_step(self, step: int) -> bool:
        return step < self.warmup_steps or (step - self.warmup_steps) % self.interval == 0

    def decide(self, state: TaylorSeerState, step: int, block: int) -> Action:
        return Action.COMPUTE if self.is_full_step(step) else Action.FORECAST

    def on_compute(self, state: TaylorSeerState, step: int, block: int, feature: Feature) -> None:
        state.tracks[block].update(feature, step)

    def approximate(self, state: TaylorSeerState, step: int, block: int) -> Feature | None:
        return state.tracks[block].forecast(step)


register_policy(TaylorSeerConfig, TaylorSeer)
