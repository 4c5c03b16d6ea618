"""Approximate KV caching over a bidirectional canvas: which positions a step recomputes.

Shapes: B batch, L canvas length, H heads, E head width.

Attention in a diffusion LM is bidirectional, so a token's keys/values change whenever any
other token changes; exact caching is impossible. The methods here reuse keys/values that
change little and *recompute* the rest each step (a *cache refresh* recomputes everything):

* ``none``: recompute every position every step (the reference).
* ``prefix`` (Fast-dLLM, arXiv 2505.22618): refresh at each block start; afterwards recompute
  the current block and everything after it, reuse the prefix.
* ``dual`` (Fast-dLLM): refresh at each block start; afterwards recompute only the current
  block, reuse prefix *and* suffix.
* ``delayed`` (dKV-Cache-Decode, arXiv 2505.15781): recompute every masked position and every
  position whose token changed since its keys/values were computed (a token decoded at step s
  is cached from step s + 1: *delayed* caching); reuse the rest.
* ``delayed_greedy`` (dKV-Cache-Greedy): as ``delayed``, but masked positions outside the
  current block are reused too.

``refresh_interval`` k forces a full recompute every k steps (counted within a block for
prefix/dual, over the whole run for the delayed modes); k = 1 makes every mode exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapters import DLLMAdapter

__all__ = ["CACHE_MODES", "CachePolicy", "KVStore"]

CACHE_MODES = ("none", "prefix", "dual", "delayed", "delayed_greedy")


@dataclass(frozen=True)
class CachePolicy:
    """Which positions to recompute. ``mode``: one of :data:`CACHE_MODES` (later modes reuse
    more: faster, further from the reference); ``refresh_interval``: full recompute every k
    steps (None: only where the mode says; 1: exact)."""

    mode: str = "none"
    refresh_interval: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.mode!r}")
        if self.refresh_interval is not None and self.refresh_interval < 1:
            raise ValueError(f"refresh_interval must be >= 1 or None, got {self.refresh_interval}")

    def positions(
        self,
        store: KVStore,
        canvas: torch.Tensor,
        mask_id: int,
        prompt_len: int,
        start: int,
        end: int,
        block_step: int,
        run_step: int,
    ) -> torch.Tensor | None:
        """Canvas positions ``(T,) int64`` to recompute this step, or None for all (a refresh)."""
        length = canvas.shape[1]
        if self.mode == "none" or store.kv is None:
            return None
        k = self.refresh_interval
        if self.mode in ("prefix", "dual"):
            if block_step == 0 or (k is not None and block_step % k == 0):
                return None
            return torch.arange(start, length if self.mode == "prefix" else end, device=canvas.device)
        if k is not None and run_step % k == 0:
            return None
        masked = canvas == mask_id
        if self.mode == "delayed_greedy":
            masked[:, end:] = False
        masked[:, :prompt_len] = False
        stale = store.ids != canvas
        return ((masked | stale).any(dim=0)).nonzero().flatten()


class KVStore:
    """Per-run keys/values of every canvas position, and the canvas they were computed from.

    ``kv``: per layer (keys, values) of shape (B, H, L, E), or None before the first forward;
    ``ids``: (B, L) the canvas tokens when each position was last computed.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.ids: torch.Tensor | None = None

    def run(
        self, adapter: DLLMAdapter, canvas: torch.Tensor, positions: torch.Tensor | None, keep: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward over ``positions`` (None: all) attending to cached keys/values elsewhere.

        Returns (logits (B, T, V), the positions run (T,) int64). ``keep``: store the new
        keys/values (False for adapters without KV support, which always run everything).
        """
        length = canvas.shape[1]
        if positions is None or self.kv is None:
            positions = torch.arange(length, device=canvas.device)
            logits, kv = adapter.forward(canvas, positions, None, return_kv=keep)
            if keep:
                self.kv, self.ids = [(k.clone(), v.clone()) for k, v in kv], canvas.clone()
            return logits, positions
        others = torch.ones(length, dtype=torch.bool, device=canvas.device)
        others[positions] = False
        past = [(k[:, :, others], v[:, :, others]) for k, v in self.kv]
        logits, kv = adapter.forward(canvas[:, positions], positions, past, return_kv=True)
        for (k_all, v_all), (k, v) in zip(self.kv, kv):
            k_all[:, :, positions], v_all[:, :, positions] = k, v
        self.ids[:, positions] = canvas[:, positions]
        return logits, positions
