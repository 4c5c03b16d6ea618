"""``fast_dllm``: confidence-aware parallel decoding + block-wise approximate KV cache.

Wu et al., "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache and
Parallel Decoding", arXiv 2505.22618. Each step commits every masked block position whose
confidence exceeds ``threshold`` (threshold rule) or, with ``factor`` set, the largest n with
(n + 1)(1 - c_n) < factor (factor rule); at least one. ``cache``: ``none``, ``prefix`` (reuse
the prefix's keys/values within a block) or ``dual`` (reuse prefix and suffix), refreshed at
every block start and every ``refresh_interval`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cache import CachePolicy
from ..core import factor_rule, threshold_rule
from ..engine import decode_blocks
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class FastDLLMConfig:
    """``threshold`` (0-1]: lower commits more per step (faster, riskier; 1.0 = one token per
    step, the reference's order). ``factor``: use the factor rule instead (larger = more per step).
    ``cache``: none | prefix | dual (more reuse = faster, further from the reference).
    ``refresh_interval``: full recompute every k steps within a block (None: block starts only; 1: exact)."""

    threshold: float = 0.9
    factor: float | None = None
    cache: str = "dual"
    refresh_interval: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.factor is not None and self.factor <= 0:
            raise ValueError(f"factor must be > 0, got {self.factor}")
        if self.cache not in ("none", "prefix", "dual"):
            raise ValueError(f"cache must be none, prefix or dual, got {self.cache!r}")
        CachePolicy(self.cache, self.refresh_interval)


class FastDLLM:
    def __init__(self, config: FastDLLMConfig) -> None:
        self.config = config
        self.cache = CachePolicy(config.cache, config.refresh_interval)

    def select(self, view):
        if self.config.factor is not None:
            return factor_rule(view.conf, view.candidates, self.config.factor)
        return threshold_rule(view.conf, view.candidates, self.config.threshold)

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        return decode_blocks(adapter, canvas, prompt_len, block_length, self.select, self.cache, stats, trace)


METHODS.register(
    "fast_dllm",
    MethodSpec(
        FastDLLMConfig,
        FastDLLM,
        "threshold/factor parallel decoding + prefix/dual KV cache",
        "Fast-dLLM, arXiv 2505.22618",
    ),
    key_type=FastDLLMConfig,
)
