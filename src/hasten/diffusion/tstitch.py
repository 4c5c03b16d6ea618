"""T-Stitch: a small denoiser for the first denoising steps, the large one for the rest.

"T-Stitch: Accelerating Sampling in Pre-trained Diffusion Models with Trajectory
Stitching" (Pan et al., arXiv 2402.14167). Two denoisers trained on the same latent space
and noise schedule make similar predictions at the noisy start of a sampling trajectory,
where only the coarse layout is decided; running a smaller, cheaper model there and the
large one for the remaining steps keeps most of the large model's quality. No training and
no change to either model: the sampler only chooses which model to call at each step.

Schedule, with ``steps`` denoising steps and step = the denoising step index (0 = the
noisiest): the small model runs the first ``small_steps(steps)`` steps, the large model
the rest. Example: ``fraction=0.4, steps=10`` -> steps 0-3 small, 4-9 large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["TStitchConfig", "denoiser_at"]

Denoiser = TypeVar("Denoiser")


@dataclass(frozen=True)
class TStitchConfig:
    """Trajectory stitching between a small and a large denoiser.

    Attributes:
        fraction: share (0-1) of the denoising steps, counted from the noisy end, that the
            small model runs. 0 = large model only (no speedup, its exact output);
            1 = small model only. Larger = faster, lower fidelity to the large model.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1]`` or not finite.
    """

    fraction: float = 0.4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fraction) and 0.0 <= self.fraction <= 1.0):
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")

    def small_steps(self, steps: int) -> int:
        """Number of leading steps (0..steps) run by the small model: ``fraction * steps``
        rounded half up. Example: ``fraction=0.25`` of 10 steps -> 3.

        Raises:
            ValueError: ``steps < 1``.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return min(steps, math.floor(self.fraction * steps + 0.5))


def denoiser_at(step: int, steps: int, config: TStitchConfig, small: Denoiser, large: Denoiser) -> Denoiser:
    """The denoiser to call at denoising step index ``step`` (0-based) of ``steps``.

    Example: ``denoiser_at(3, 10, TStitchConfig(0.4), s, l)`` is ``s``; step 4 gives ``l``.

    Raises:
        ValueError: ``step`` outside ``[0, steps)``.
    """
    if not 0 <= step < steps:
        raise ValueError(f"step must be in [0, {steps}), got {step}")
    return small if step < config.small_steps(steps) else large
