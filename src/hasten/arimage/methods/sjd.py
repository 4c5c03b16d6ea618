"""``sjd``: Speculative Jacobi Decoding (Teng et al., "Accelerating Auto-regressive
Text-to-Image Generation with Training-free Speculative Jacobi Decoding", arXiv 2410.01699).

Jacobi drafts verified with the exact speculative sampling rule min(1, target/draft) and
norm(max(0, target - draft)) recovery (:func:`hasten.verify.speculative_sample_accept`, the
LLM side's rule): the images have the reference sampler's distribution. The loop is
:func:`hasten.arimage.jacobi.jacobi_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...verify import speculative_sample_accept
from ..core import DecodeSettings
from ..jacobi import INITS, jacobi_tokens
from . import METHODS, ImageStats, MethodSpec

__all__ = ["SJDConfig", "SJD"]


def check_window(window: object, init: object) -> None:
    """Raises ValueError for a window that is not an int >= 1 or an unknown init."""
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window must be an int >= 1 (positions scored per forward; 1 = reference), got {window!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")


@dataclass(frozen=True)
class SJDConfig:
    """Attributes:
        window: positions scored per forward (window - 1 drafts). Larger = fewer forwards
            when drafts are accepted, more compute per forward; 1 = the reference sampler.
        init: how positions entering the window are drafted: ``"random"`` (uniform) or
            ``"spatial"`` (from the token one row up).

    Raises:
        ValueError: window < 1 or an unknown init.
    """

    window: int = 16
    init: str = "spatial"

    def __post_init__(self) -> None:
        check_window(self.window, self.init)


class SJD:
    """Speculative Jacobi Decoding with exact acceptance (lossless in distribution)."""

    def __init__(self, config: SJDConfig):
        self.config = config

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        return jacobi_tokens(
            model, label, settings, generator, self.config.window, self.config.init, speculative_sample_accept
        )


METHODS.register(
    "sjd",
    MethodSpec("sjd", SJDConfig, SJD, ("discrete",), True, "Speculative Jacobi Decoding, arXiv 2410.01699"),
    key_type=SJDConfig,
)
