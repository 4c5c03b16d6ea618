"""``local_leap``: local determinism propagation - anchors at a high confidence bound, then
a relaxed bound for positions within ``radius`` of an anchor.

"LocalLeap" (local determinism propagation for parallel decoding of diffusion LMs),
arXiv 2510.07081. Anchors are masked positions with confidence above ``anchor_threshold``;
their neighbours within ``radius`` commit above ``relaxed_threshold``. ``radius=0`` is
``fast_dllm`` at ``threshold=anchor_threshold`` exactly. Uses the same block caches as fast_dllm.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cache import CachePolicy
from ..core import local_leap_rule
from ..engine import decode_blocks
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class LocalLeapConfig:
    """``anchor_threshold`` (0-1]: confidence an anchor needs (lower = more anchors, faster).
    ``relaxed_threshold`` (0-1]: what an anchor's neighbour needs (lower = faster, riskier).
    ``radius`` (positions, >= 0): how far an anchor relaxes the bound. ``cache``: none | prefix | dual."""

    anchor_threshold: float = 0.9
    relaxed_threshold: float = 0.7
    radius: int = 2
    cache: str = "dual"
    refresh_interval: int | None = None

    def __post_init__(self) -> None:
        for name in ("anchor_threshold", "relaxed_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.relaxed_threshold > self.anchor_threshold:
            raise ValueError("relaxed_threshold must not exceed anchor_threshold")
        if self.radius < 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if self.cache not in ("none", "prefix", "dual"):
            raise ValueError(f"cache must be none, prefix or dual, got {self.cache!r}")
        CachePolicy(self.cache, self.refresh_interval)


class LocalLeap:
    def __init__(self, config: LocalLeapConfig) -> None:
        self.config = config
        self.cache = CachePolicy(config.cache, config.refresh_interval)

    def select(self, view):
        c = self.config
        return local_leap_rule(view.conf, view.candidates, c.anchor_threshold, c.relaxed_threshold, c.radius)

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        return decode_blocks(adapter, canvas, prompt_len, block_length, self.select, self.cache, stats, trace)


METHODS.register(
    "local_leap",
    MethodSpec(
        LocalLeapConfig,
        LocalLeap,
        "anchors + relaxed threshold within a radius",
        "LocalLeap (local determinism propagation), arXiv 2510.07081",
    ),
    key_type=LocalLeapConfig,
)
