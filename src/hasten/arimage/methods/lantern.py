"""``lantern``: LANTERN's relaxed acceptance (Jang et al., "LANTERN: Accelerating Visual
Autoregressive Models with Relaxed Speculative Decoding", arXiv 2410.03355), applied to
Jacobi (SJD) drafts.

LANTERN pairs its rule with a trained drafter; hasten has none for image models, so
here the rule relaxes the training-free Jacobi drafts of ``sjd``. A draft x is accepted
with min(1, target~(x) / draft(x)) where target~(x) adds the target mass of x's nearest
codebook neighbours (at most ``k``) while the moved mass stays within the total-variation
bound ``delta`` (:func:`hasten.arimage.core.lantern_accept_mass`); recovery is the exact
rule's. Lossy; measured by the bench. ``delta = 0`` is ``sjd`` draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import DecodeSettings, lantern_accept_mass, neighbour_order, relaxed_speculative_accept
from ..jacobi import jacobi_tokens
from . import METHODS, ImageStats, MethodSpec
from .sjd import check_window

__all__ = ["LanternConfig", "Lantern"]


@dataclass(frozen=True)
class LanternConfig:
    """Attributes:
        window, init: as :class:`hasten.arimage.methods.sjd.SJDConfig`.
        k: nearest codebook neighbours whose mass a draft may take (>= 0).
        delta: total-variation bound on the moved mass, in [0, 1] (0 = exact SJD; larger
            = more acceptance, more fidelity risk).

    Raises:
        ValueError: a field out of range.
    """

    window: int = 16
    init: str = "spatial"
    k: int = 2
    delta: float = 0.2

    def __post_init__(self) -> None:
        check_window(self.window, self.init)
        if not (isinstance(self.k, int) and self.k >= 0):
            raise ValueError(f"k must be an int >= 0, got {self.k!r}")
        if not 0 <= self.delta <= 1:
            raise ValueError(f"delta must be in [0, 1], got {self.delta}")


class Lantern:
    """Jacobi drafting with LANTERN's relaxed acceptance."""

    def __init__(self, config: LanternConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        order = neighbour_order(model.codebook)
        cfg = self.config

        def accept(drafts, draft_probs, target_probs, gen):
            rows = torch.arange(drafts.numel())
            num = lantern_accept_mass(drafts, target_probs, order, cfg.k, cfg.delta)
            return relaxed_speculative_accept(drafts, draft_probs, target_probs, num, draft_probs[rows, drafts], gen)

        return jacobi_tokens(model, label, settings, generator, cfg.window, cfg.init, accept)


METHODS.register(
    "lantern",
    MethodSpec(
        "lantern",
        LanternConfig,
        Lantern,
        ("discrete",),
        False,
        "LANTERN relaxed speculative decoding, arXiv 2410.03355 (on SJD drafts)",
    ),
    key_type=LanternConfig,
)
