"""``dkv_cache``: delayed KV caching for diffusion LMs, decode and greedy variants.

Ma et al., "dKV-Cache: The Cache for Diffusion Language Models", arXiv 2505.15781. A token's
keys/values are cached one step *after* it is decoded (when its representation has settled)
and reused until a refresh every ``refresh_interval`` steps; ``variant="decode"`` recomputes
every masked position each step, ``"greedy"`` only the current block's (reusing stale
masked keys/values elsewhere: faster, less faithful). Unmasking follows the reference's
low-confidence schedule, so with ``refresh_interval=1`` it *is* the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cache import CachePolicy
from ..core import low_confidence_topk, num_transfer_tokens
from ..engine import decode_blocks
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class DKVCacheConfig:
    """``variant``: decode | greedy (greedy reuses more). ``refresh_interval``: full recompute
    every k steps (smaller = closer to the reference, slower; 1 = exact). ``steps_per_block``:
    as the reference's (None: block length, one token per step)."""

    variant: str = "decode"
    refresh_interval: int = 8
    steps_per_block: int | None = None

    def __post_init__(self) -> None:
        if self.variant not in ("decode", "greedy"):
            raise ValueError(f"variant must be decode or greedy, got {self.variant!r}")
        if self.refresh_interval < 1:
            raise ValueError(f"refresh_interval must be >= 1, got {self.refresh_interval}")
        if self.steps_per_block is not None and self.steps_per_block < 1:
            raise ValueError(f"steps_per_block must be >= 1, got {self.steps_per_block}")


class DKVCache:
    def __init__(self, config: DKVCacheConfig) -> None:
        self.config = config
        mode = "delayed" if config.variant == "decode" else "delayed_greedy"
        self.cache = CachePolicy(mode, config.refresh_interval)
        self._schedule: torch.Tensor | None = None

    def select(self, view):
        if view.block_step == 0:
            self._schedule = num_transfer_tokens(view.candidates, self._steps)
        k = self._schedule[:, min(view.block_step, self._steps - 1)]
        return low_confidence_topk(view.conf, view.candidates, k)

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        self._steps = self.config.steps_per_block or block_length
        if self._steps > block_length:
            raise ValueError(f"steps_per_block {self._steps} exceeds block_length {block_length}")
        return decode_blocks(adapter, canvas, prompt_len, block_length, self.select, self.cache, stats, trace)


METHODS.register(
    "dkv_cache",
    MethodSpec(
        DKVCacheConfig,
        DKVCache,
        "delayed KV cache with periodic refresh (decode / greedy)",
        "dKV-Cache, arXiv 2505.15781",
    ),
    key_type=DKVCacheConfig,
)
