"""``ar_guided``: an autoregressive model decides which of the dLLM's proposals to unmask,
with the dLLM's stable prefix keys/values reused (FreeCache).

Hu et al., "Accelerating Diffusion Language Model Inference via Efficient KV Caching and
Guided Diffusion", arXiv 2505.21467. Each step the dLLM proposes its greedy token at every
masked block position (one forward over the block and what follows it, the prompt and
finished blocks served from cache: ``cache="prefix"``); the guide (a causal LM sharing the
tokenizer, SmolLM2-135M by default) reads prompt + decoded tokens + proposals once, and the
proposals it agrees with greedily (its own next-token argmax), from the block's first masked
position onward, commit together; where it disagrees at once, the dLLM's most confident
proposal commits alone (so decoding always progresses, as in the reference).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from ..cache import CachePolicy
from ..core import threshold_rule
from ..engine import decode_blocks
from . import METHODS, MethodSpec


@dataclass(frozen=True)
class ARGuidedConfig:
    """``guide``: a built-in model name for :func:`hasten.load_model` or a loaded causal LM
    (transformers, same tokenizer as the dLLM's user ids). ``cache``: none | prefix | dual
    (FreeCache reuses the stable prefix: ``prefix``). ``max_accept``: most proposals one guide
    pass may commit (0 = no limit; smaller = closer to the reference, slower)."""

    guide: Any = "smollm2-135m"
    cache: str = "prefix"
    max_accept: int = 0

    def __post_init__(self) -> None:
        if self.cache not in ("none", "prefix", "dual"):
            raise ValueError(f"cache must be none, prefix or dual, got {self.cache!r}")
        if self.max_accept < 0:
            raise ValueError(f"max_accept must be >= 0, got {self.max_accept}")
        if not isinstance(self.guide, (str, torch.nn.Module)):
            raise TypeError("guide must be a model name or a loaded causal LM")


def agreed_run(proposal: torch.Tensor, guide_next: torch.Tensor, candidates: torch.Tensor, limit: int) -> torch.Tensor:
    """Masked positions the guide agrees with, left to right until its first disagreement.

    ``proposal``, ``guide_next``: (B, N) int64 (guide_next[b, i] is the guide's greedy token for
    block position i given everything before it); ``candidates``: (B, N) bool still masked.
    Decoded positions are passed over. ``limit`` caps the count (0: none).

    >>> agreed_run(torch.tensor([[4, 5, 6, 7]]), torch.tensor([[4, 0, 6, 1]]),
    ...            torch.tensor([[True, False, True, True]]), 0).tolist()
    [[True, False, True, False]]
    """
    ok = (proposal == guide_next) | ~candidates
    run = ok.long().cumprod(dim=1).bool() & candidates
    if limit:
        run &= run.long().cumsum(dim=1) <= limit
    return run


@functools.lru_cache(maxsize=2)
def _named_guide(name: str) -> torch.nn.Module:
    """A built-in guide, loaded once per process (``generate`` builds a method object per call,
    and loading SmolLM2 takes seconds: it must not land inside every decode)."""
    from ... import load_model

    return load_model(name)[0].eval()


class ARGuided:
    def __init__(self, config: ARGuidedConfig) -> None:
        self.config = config
        self.cache = CachePolicy(config.cache)
        self._guide = None

    def guide(self) -> torch.nn.Module:
        if self._guide is None:
            self._guide = _named_guide(self.config.guide) if isinstance(self.config.guide, str) else self.config.guide
        return self._guide

    def select(self, view):
        proposal = torch.where(view.candidates, view.tokens, view.canvas[:, view.start : view.end])
        context = torch.cat([view.canvas[:, : view.start], proposal], dim=1)
        user_ids = view.adapter.decode_ids(context)
        logits = self.guide()(input_ids=user_ids).logits
        view.stats.guide_forwards += 1
        guide_next = logits[:, view.start - 1 : view.end - 1].argmax(dim=-1)
        user_proposal = user_ids[:, view.start : view.end]
        run = agreed_run(user_proposal, guide_next, view.candidates, self.config.max_accept)
        return run | threshold_rule(view.conf, view.candidates & ~run.any(dim=1, keepdim=True), 1.0)

    def run(self, adapter, canvas, prompt_len, block_length, stats, trace=None):
        self.guide()
        return decode_blocks(adapter, canvas, prompt_len, block_length, self.select, self.cache, stats, trace)


METHODS.register(
    "ar_guided",
    MethodSpec(
        ARGuidedConfig,
        ARGuided,
        "an AR guide picks which proposals to unmask (+ FreeCache prefix reuse)",
        "FreeCache + guided diffusion, arXiv 2505.21467",
    ),
    key_type=ARGuidedConfig,
)
