"""``disa``: diffusion-step annealing of a continuous-token model's diffusion head (Zhao et
al., "DiSA: Diffusion Step Annealing in Autoregressive Image Generation", arXiv 2505.20297).

As more tokens are generated the next token's distribution narrows, so the head needs
fewer denoising steps: token i uses a number of head steps annealed linearly from
``start_steps`` (first token) to ``end_steps`` (last token)
(:func:`hasten.arimage.mar.annealed_steps`). Training-free; lossy (fewer steps
approximate the head's distribution less well); the bench measures the fidelity cost.
``start_steps == end_steps == head_steps`` is the reference sampler draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import DecodeSettings
from ..mar import annealed_steps, mar_reference_tokens
from . import METHODS, ImageStats, MethodSpec

__all__ = ["DiSAConfig", "DiSA"]


@dataclass(frozen=True)
class DiSAConfig:
    """Attributes:
        start_steps: head steps for the first token (the reference's count; >= 1).
        end_steps: head steps for the last token (1 <= end_steps <= start_steps; fewer =
            faster, more fidelity risk).

    Raises:
        ValueError: a field out of range.
    """

    start_steps: int = 25
    end_steps: int = 3

    def __post_init__(self) -> None:
        if not (
            isinstance(self.start_steps, int)
            and isinstance(self.end_steps, int)
            and 1 <= self.end_steps <= self.start_steps
        ):
            raise ValueError(f"need ints 1 <= end_steps <= start_steps, got {self.start_steps}, {self.end_steps}")


class DiSA:
    """Reference AR sampling with an annealed number of head steps per token."""

    def __init__(self, config: DiSAConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        cfg = self.config
        steps = [annealed_steps(i, model.seq_len, cfg.start_steps, cfg.end_steps) for i in range(model.seq_len)]
        return mar_reference_tokens(model, label, settings, generator, steps)


METHODS.register(
    "disa",
    MethodSpec("disa", DiSAConfig, DiSA, ("continuous",), False, "DiSA: Diffusion Step Annealing, arXiv 2505.20297"),
    key_type=DiSAConfig,
)
