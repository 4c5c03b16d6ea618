"""``reference``: LLaDA low-confidence remasking, semi-autoregressive blocks, no cache
(Nie et al., "Large Language Diffusion Models", arXiv 2502.09992). See :mod:`..reference`."""

from __future__ import annotations

from dataclasses import dataclass

from ..reference import reference_sample
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class ReferenceConfig:
    """``steps_per_block``: denoising steps per block (None: the block length, one token per
    step; fewer steps commit more tokens per step: faster, less faithful)."""

    steps_per_block: int | None = None

    def __post_init__(self) -> None:
        if self.steps_per_block is not None and self.steps_per_block < 1:
            raise ValueError(f"steps_per_block must be >= 1, got {self.steps_per_block}")


class Reference:
    def __init__(self, config: ReferenceConfig) -> None:
        self.config = config

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        steps = self.config.steps_per_block or block_length
        if steps > block_length:
            raise ValueError(f"steps_per_block {steps} exceeds block_length {block_length}")
        return reference_sample(adapter, canvas, prompt_len, block_length, steps, stats, trace)


METHODS.register(
    "reference",
    MethodSpec(
        ReferenceConfig,
        Reference,
        "LLaDA low-confidence remasking (baseline)",
        "Large Language Diffusion Models, arXiv 2502.09992",
    ),
    key_type=ReferenceConfig,
)
