"""cg_taylor: confidence-gated Taylor forecasting of the last block (Forecasting When to Forecast).

"Forecasting When to Forecast: Accelerating Diffusion Models with Confidence-Gated
Taylor" (arXiv 2508.02240). Two changes to TaylorSeer (arXiv 2503.06923):

1. Forecast only the *last* block's output, so Taylor factors are kept for one feature
   instead of every module's.
2. Decide each step whether the forecast can be trusted: the first block always runs,
   its actual output is compared with its own Taylor forecast, and the error

       e = max over samples of  sum|actual - forecast| / sum|actual|

   gates the step. If ``e < threshold`` the middle blocks are bypassed (hidden states
   pass through untouched; their value is not used) and the last block returns its
   forecast output; otherwise every block runs and both Taylor tracks are refreshed.

The error is relative to the first block's *actual* output (the forecast is the candidate).
Blocks whose output shape differs from their input (UNet down/up blocks) cannot be
bypassed and run anyway, so on UNets this method saves little.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.diffusion.features import Feature
from hasten.diffusion.forecast import TaylorTrack
from hasten.diffusion.metrics import feature_relative_l1
from hasten.diffusion.policy import Action, CachePolicy, FeatureKind, register_policy


@dataclass(frozen=True)
class CGTaylorConfig:
    """Confidence-gated last-block Taylor forecasting.

    Attributes:
        threshold: largest relative L1 error (a fraction, >= 0) of the first block's
            forecast for which the step is forecast. 0 = never forecast (uncached);
            larger = faster, lower fidelity.
        order: highest derivative order of both forecasts (0, 1 or 2).
        warmup_steps: steps computed in full at the start of each run (>= 0).
        max_consecutive_forecasts: cap on forecast steps in a row (>= 1), None = no cap.
            Smaller = slower, bounded extrapolation distance.
    """

    threshold: float = 0.05
    order: int = 1
    warmup_steps: int = 2
    max_consecutive_forecasts: int | None = None

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {self.order}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_consecutive_forecasts is not None and self.max_consecutive_forecasts < 1:
            raise ValueError(f"max_consecutive_forecasts must be >= 1 or None, got {self.max_consecutive_forecasts}")


class CGTaylorState:
    """Per-lane Taylor tracks of the first and last block outputs, and the forecast streak."""

    def __init__(self, order: int) -> None:
        self.first = TaylorTrack(order)
        self.last = TaylorTrack(order)
        self.reset()

    def reset(self) -> None:
        self.first.reset()
        self.last.reset()
        self.consecutive_forecasts = 0
        self.forecast_now = False


class CGTaylor(CachePolicy):
    """Run block 0; if its Taylor forecast was accurate, bypass the middle and forecast the last block."""

    name = "cg_taylor"

    def __init__(self, config: CGTaylorConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        if num_blocks < 2:
            raise ValueError("cg_taylor needs at least 2 blocks (a first and a last)")
        self.config = config
        self.last_block = num_blocks - 1

    def new_state(self) -> CGTaylorState:
        return CGTaylorState(self.config.order)

    def feature_kind(self, block: int) -> FeatureKind:
        return FeatureKind.OUTPUT if block in (0, self.last_block) else FeatureKind.RESIDUAL

    def observes(self, block: int) -> bool:
        return block in (0, self.last_block)

    def begin_step(self, state: CGTaylorState, step: int) -> None:
        state.forecast_now = False

    def decide(self, state: CGTaylorState, step: int, block: int) -> Action:
        if block == 0 or not state.forecast_now:
            return Action.COMPUTE
        return Action.FORECAST if block == self.last_block else Action.BYPASS

    def on_compute(self, state: CGTaylorState, step: int, block: int, feature: Feature) -> float | None:
        if block == self.last_block:
            state.last.update(feature, step)
            return None
        predicted = state.first.forecast(step) if state.last.step is not None else None
        measured = feature_relative_l1(feature, predicted) if predicted is not None else None
        state.forecast_now = measured is not None and self._may_forecast(state, step, measured)
        if state.forecast_now:
            state.consecutive_forecasts += 1
        else:
            state.consecutive_forecasts = 0
            state.first.update(feature, step)
        return measured

    def _may_forecast(self, state: CGTaylorState, step: int, measured: float) -> bool:
        cap = self.config.max_consecutive_forecasts
        return (
            step >= self.config.warmup_steps
            and measured < self.config.threshold
            and (cap is None or state.consecutive_forecasts < cap)
        )

    def approximate(self, state: CGTaylorState, step: int, block: int) -> Feature | None:
        return state.last.forecast(step) if block == self.last_block else None


register_policy(CGTaylorConfig, CGTaylor)
