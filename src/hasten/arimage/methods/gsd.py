"""``gsd``: Grouped Speculative Decoding (So et al., "Grouped Speculative Decoding for
Autoregressive Image Generation", arXiv 2508.07747), on Jacobi drafts.

A draft x is accepted with min(1, sum_G target / sum_G draft) over its dynamic group G:
x plus those of its nearest codebook neighbours that rank among the target's
``group_size`` most likely tokens at that position
(:func:`hasten.arimage.core.gsd_accept_mass`); recovery after a rejection is the exact
rule's norm(max(0, target - draft)). Lossy: visually close tokens stand in for each other;
the bench measures the fidelity cost. ``group_size = 0`` is ``sjd`` draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import DecodeSettings, gsd_accept_mass, neighbour_order, relaxed_speculative_accept
from ..jacobi import jacobi_tokens
from . import METHODS, ImageStats, MethodSpec
from .sjd import check_window

__all__ = ["GSDConfig", "GSD"]


@dataclass(frozen=True)
class GSDConfig:
    """Attributes:
        window, init: as :class:`hasten.arimage.methods.sjd.SJDConfig`.
        group_size: how many top-ranked target tokens a group may draw from (0 = exact
            SJD; larger = more acceptance, more fidelity risk).
        neighbours: codebook neighbours of the draft considered for its group (>= 0).

    Raises:
        ValueError: a field out of range.
    """

    window: int = 16
    init: str = "spatial"
    group_size: int = 4
    neighbours: int = 2

    def __post_init__(self) -> None:
        check_window(self.window, self.init)
        for name in ("group_size", "neighbours"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")


class GSD:
    """Jacobi drafting with grouped acceptance."""

    def __init__(self, config: GSDConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        order = neighbour_order(model.codebook)
        cfg = self.config

        def accept(drafts, draft_probs, target_probs, gen):
            num, den = gsd_accept_mass(drafts, draft_probs, target_probs, order, cfg.group_size, cfg.neighbours)
            return relaxed_speculative_accept(drafts, draft_probs, target_probs, num, den, gen)

        return jacobi_tokens(model, label, settings, generator, cfg.window, cfg.init, accept)


METHODS.register(
    "gsd",
    MethodSpec("gsd", GSDConfig, GSD, ("discrete",), False, "Grouped Speculative Decoding, arXiv 2508.07747"),
    key_type=GSDConfig,
)
