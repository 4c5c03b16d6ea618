"""``disa``: diffusion-step annealing of a continuous-token model's diffusion head (Zhao et
al., "DiSA: Diffusion Step Annealing in Autoregressive Image Generation", arXiv 2505.20297).

As more tokens are generated the next token's distribution narrows, so the head needs
fewer denoising steps: token i uses a number of head steps annealed from
``start_steps`` (first token) to ``end_steps`` (last token) along one of the paper's
schedules, ``linear``, ``cosine`` or ``two_stage`` (:func:`hasten.arimage.mar.annealed_steps`).
Under ``linear`` and ``cosine`` the mean count is about (start + end) / 2, so starting at
the reference's own count caps the saving near 2x; ``two_stage`` keeps the full count for
the first ``switch`` share of the tokens only. (The paper also starts below the original
count: MAR's 100 steps annealed from 50 to 5.) Training-free; lossy (fewer steps
approximate the head's distribution less well); the bench measures the fidelity cost.
``start_steps == end_steps == head_steps`` (or ``two_stage`` with ``switch`` 1) is the
reference sampler draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import DecodeSettings
from ..mar import ANNEAL_SCHEDULES, annealed_steps, mar_reference_tokens
from . import METHODS, ImageStats, MethodSpec

__all__ = ["DiSAConfig", "DiSA"]


@dataclass(frozen=True)
class DiSAConfig:
    """Attributes:
        start_steps: head steps for the first token (the reference's count; >= 1).
        end_steps: head steps for the last token (1 <= end_steps <= start_steps; fewer =
            faster, more fidelity risk).
        schedule: ``"linear"``, ``"cosine"`` or ``"two_stage"`` (see the module docstring).
        switch: ``two_stage`` only: the share of tokens (0-1, from the first) that keep
            ``start_steps``; lower = faster, more fidelity risk.

    Raises:
        ValueError: a field out of range.
    """

    start_steps: int = 25
    end_steps: int = 3
    schedule: str = "linear"
    switch: float = 0.25

    def __post_init__(self) -> None:
        if not (
            isinstance(self.start_steps, int)
            and isinstance(self.end_steps, int)
            and 1 <= self.end_steps <= self.start_steps
        ):
            raise ValueError(f"need ints 1 <= end_steps <= start_steps, got {self.start_steps}, {self.end_steps}")
        if self.schedule not in ANNEAL_SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; use one of {ANNEAL_SCHEDULES}")
        if not 0 <= self.switch <= 1:
            raise ValueError(f"switch must be in [0, 1], got {self.switch}")


class DiSA:
    """Reference AR sampling with an annealed number of head steps per token."""

    def __init__(self, config: DiSAConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        cfg = self.config
        steps = [
            annealed_steps(i, model.seq_len, cfg.start_steps, cfg.end_steps, cfg.schedule, cfg.switch)
            for i in range(model.seq_len)
        ]
        return mar_reference_tokens(model, label, settings, generator, steps)


METHODS.register(
    "disa",
    MethodSpec("disa", DiSAConfig, DiSA, ("continuous",), False, "DiSA: Diffusion Step Annealing, arXiv 2505.20297"),
    key_type=DiSAConfig,
)
