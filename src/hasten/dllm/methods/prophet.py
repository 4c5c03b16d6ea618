"""``prophet``: early commit when the model already knows the answer, plus end-of-text stop.

Li et al., "Diffusion Language Models Know the Answer Before Decoding" (Prophet),
arXiv 2508.19982: when the mean top-2 logit gap over the block's masked positions reaches a
threshold that falls as decoding progresses (``gaps`` for progress below 1/3, 2/3, then the
rest), commit the whole remaining block at once ("go all-in"); otherwise the base rule (the
reference's one-token schedule, or a confidence ``threshold``). ``eotp``: end-of-text
prediction from Learn2PD (Bao et al., arXiv 2509.25188) - once an end-of-text token is
committed, every masked position after it becomes end-of-text and those blocks take no step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cache import CachePolicy
from ..core import threshold_rule, top2_gap
from ..engine import decode_blocks
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class ProphetConfig:
    """``gaps``: top-2 logit-gap thresholds (logits; lower = earlier all-in, faster, riskier)
    for progress < 1/3, < 2/3 and the rest. ``threshold``: base rule (1.0 = one token per step).
    ``eotp``: end-of-text early stop. ``cache``: none | prefix | dual."""

    gaps: tuple[float, float, float] = (7.5, 5.0, 2.5)
    threshold: float = 1.0
    eotp: bool = True
    cache: str = "none"

    def __post_init__(self) -> None:
        if len(self.gaps) != 3 or any(g < 0 for g in self.gaps):
            raise ValueError(f"gaps must be three non-negative logit gaps, got {self.gaps}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.cache not in ("none", "prefix", "dual"):
            raise ValueError(f"cache must be none, prefix or dual, got {self.cache!r}")
        object.__setattr__(self, "gaps", tuple(float(g) for g in self.gaps))


class Prophet:
    def __init__(self, config: ProphetConfig) -> None:
        self.config = config
        self.cache = CachePolicy(config.cache)

    def select(self, view):
        gaps = self.config.gaps
        bound = gaps[0] if view.progress < 1 / 3 else gaps[1] if view.progress < 2 / 3 else gaps[2]
        gap = top2_gap(view.logits).masked_fill(~view.candidates, 0.0).sum(dim=1)
        mean_gap = gap / view.candidates.sum(dim=1).clamp_min(1)
        all_in = (mean_gap >= bound)[:, None] & view.candidates
        return torch.where(
            all_in.any(dim=1, keepdim=True), all_in, threshold_rule(view.conf, view.candidates, self.config.threshold)
        )

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        return decode_blocks(
            adapter, canvas, prompt_len, block_length, self.select, self.cache, stats, trace, eos_fill=self.config.eotp
        )


METHODS.register(
    "prophet",
    MethodSpec(
        ProphetConfig,
        Prophet,
        "early all-in commit on a wide top-2 gap + EoTP stop",
        "Prophet arXiv 2508.19982; Learn2PD EoTP arXiv 2509.25188",
    ),
    key_type=ProphetConfig,
)
