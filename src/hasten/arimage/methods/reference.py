"""``reference``: plain autoregressive sampling, one token per forward with a KV cache.

The one-screen path every method is measured against (and, for lossless methods, tested
against): each forward scores the next position for every CFG row, the guided logits go
through temperature / top-k / top-p (:class:`hasten.arimage.core.DecodeSettings`) and one
token is drawn from the processed distribution with the image's generator. For
continuous-token models the next token is drawn by the diffusion head's DDPM sampler
(:func:`hasten.arimage.mar.sample_token`) conditioned on the transformer's z.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import DecodeSettings
from . import METHODS, ImageStats, MethodSpec

__all__ = ["ReferenceConfig", "ReferenceSampler", "reference_tokens"]


@dataclass(frozen=True)
class ReferenceConfig:
    """Plain sampling has no knobs except, for continuous models, the head's step count.

    Attributes:
        head_steps: DDPM steps of the diffusion head per token (continuous models only;
            more = closer to the trained model, slower). >= 1.
    """

    head_steps: int = 25

    def __post_init__(self) -> None:
        if not (isinstance(self.head_steps, int) and self.head_steps >= 1):
            raise ValueError(f"head_steps must be an int >= 1, got {self.head_steps!r}")


def reference_tokens(
    model, label: int, settings: DecodeSettings, generator: torch.Generator
) -> tuple[torch.Tensor, ImageStats]:
    """Plain AR sampling of one discrete-token image.

    Args:
        model: an :class:`hasten.arimage.adapters.ImageTokenModel`.
        label: class 0..num_classes-1. settings: CFG / temperature / top-k / top-p.
        generator: the image's RNG (one ``torch.multinomial`` draw per token).

    Returns:
        ((L,) int64 tokens, counters: L forwards).
    """
    rows = settings.rows
    class_ids = rows.class_ids(label, model.null_class)
    cache, stats = model.new_cache(), ImageStats()
    inputs = torch.zeros(len(rows.roles), 1, dtype=torch.int64)  # position 0: the class slot
    tokens = []
    for _ in range(model.seq_len):
        target_probs = settings.target_probs(model.forward(inputs, class_ids, cache))  # (1, V)
        token = int(torch.multinomial(target_probs[0], 1, generator=generator))
        tokens.append(token)
        inputs = torch.full_like(inputs, token)
        stats.forwards += 1
        stats.accepted_per_forward.append(1)
    stats.tokens = len(tokens)
    return torch.tensor(tokens, dtype=torch.int64), stats


class ReferenceSampler:
    """Plain AR sampling (discrete tokens) or AR + diffusion-head sampling (continuous)."""

    def __init__(self, config: ReferenceConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        if model.kind == "continuous":
            from ..mar import mar_reference_tokens

            return mar_reference_tokens(model, label, settings, generator, self.config.head_steps)
        return reference_tokens(model, label, settings, generator)


METHODS.register(
    "reference",
    MethodSpec(
        "reference",
        ReferenceConfig,
        ReferenceSampler,
        ("discrete", "continuous"),
        True,
        "plain autoregressive sampling (the baseline)",
    ),
    key_type=ReferenceConfig,
)
