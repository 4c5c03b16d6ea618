"""Taylor-series forecasting of features over denoising steps (pure functions).

From "From Reusing to Forecasting: Accelerating Diffusion Models with TaylorSeers"
(Liu et al., arXiv 2503.06923): after each full computation at step index ``s`` the
*Taylor factors* of a feature F are refreshed by backward finite differences,

    factors[0] = F(s)
    factors[i+1] = (factors_new[i] - factors_old[i]) / (s - s_previous)

and at a later step ``s + k`` the feature is forecast as

    F(s + k) ~= sum_i factors[i] * k**i / i!

Distances are in denoising step indices. The forecast is exact for features linear in the
step index (order >= 1); for higher-degree features it carries the truncation error of
backward differences (e.g. F = s**2 sampled at 0, 1, 2 forecasts 8 at s = 3, not 9).
"""

from __future__ import annotations

import math

from hasten.diffusion.features import Feature

TaylorFactors = tuple[Feature, ...]


def taylor_update(factors: TaylorFactors, feature: Feature, distance: int, max_order: int) -> TaylorFactors:
    """New Taylor factors after a full computation.

    Args:
        factors: previous factors (``()`` before the first computation); each a feature.
        feature: the freshly computed feature (tuple of tensors).
        distance: steps since the previous full computation (> 0 when ``factors`` is non-empty).
        max_order: highest derivative order kept (0 = plain reuse).

    Returns:
        Up to ``min(len(factors), max_order) + 1`` factors.

    Raises:
        ValueError: ``distance <= 0`` with previous factors, or ``max_order < 0``.

    Example (one scalar-like tensor): factors ``(F=2,)``, new feature 5, distance 3,
    max_order 1 gives ``(5, 1)``: derivative (5 - 2) / 3 per step.
    """
    if max_order < 0:
        raise ValueError(f"max_order must be >= 0, got {max_order}")
    if factors and distance <= 0:
        raise ValueError(f"distance must be > 0, got {distance}")
    new: list[Feature] = [feature]
    for order in range(min(len(factors), max_order)):
        new.append(tuple((n - o) / distance for n, o in zip(new[order], factors[order])))
    return tuple(new)


def taylor_forecast(factors: TaylorFactors, offset: int) -> Feature:
    """Forecast the feature ``offset`` steps after the last full computation.

    Args:
        factors: non-empty Taylor factors from :func:`taylor_update`.
        offset: steps after the last full computation (0 returns ``factors[0]``).

    Returns:
        The forecast feature, same shapes and dtypes as ``factors[0]``.

    Raises:
        ValueError: ``factors`` is empty.

    Example: factors ``(5, 1)`` and offset 2 forecast 5 + 1 * 2 = 7.
    """
    if not factors:
        raise ValueError("cannot forecast without a computed feature")
    result = list(factors[0])
    for order in range(1, len(factors)):
        scale = offset**order / math.factorial(order)
        result = [r + d * scale for r, d in zip(result, factors[order])]
    return tuple(result)


class TaylorTrack:
    """Taylor factors of one feature plus the step index they were computed at; ``reset()`` empties."""

    def __init__(self, max_order: int) -> None:
        self.max_order = max_order
        self.factors: TaylorFactors = ()
        self.step: int | None = None

    def reset(self) -> None:
        self.factors, self.step = (), None

    def update(self, feature: Feature, step: int) -> None:
        """Fold in a feature computed at ``step`` (a step at or before the last one starts over)."""
        if self.step is not None and step <= self.step:
            self.reset()
        distance = step - self.step if self.step is not None else 1
        self.factors = taylor_update(self.factors, feature, distance, self.max_order)
        self.step = step

    def forecast(self, step: int) -> Feature | None:
        """The feature forecast for ``step``; None before any update."""
        if self.step is None:
            return None
        return taylor_forecast(self.factors, step - self.step)
