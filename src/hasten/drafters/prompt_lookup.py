"""Prompt lookup drafting: copy what followed the last n tokens earlier in the context.

Implements input-guided aggressive decoding (Ge et al., "Lossless Acceleration for
Seq2seq Generation with Aggressive Decoding", arXiv 2205.10350) in the form popularized as
prompt lookup decoding (Saxena 2023): the last n committed tokens (n from ``max_ngram``
down to ``min_ngram``) are looked up among earlier positions of prompt + generated text;
the tokens that followed the longest, then most recent, match are the draft.

The n-gram index is incremental (each committed token is indexed once), so a lookup costs
O(max_ngram) dictionary probes regardless of context length. A match whose continuation
runs into the current suffix is continued periodically, so repetitive text drafts fully.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ngram import continuation
from ..tree import DraftTree
from .base import Drafter, MethodSpec, register


@dataclass(frozen=True)
class PromptLookupConfig:
    """Prompt lookup settings.

    Attributes:
        max_ngram: longest suffix (tokens) matched first; longer matches are rarer but
            more reliable.
        min_ngram: shortest suffix tried; 1 drafts more often but less accurately.
        max_draft: cap on drafted tokens per step; more risks more wasted verification.
        adaptive: shrink the draft after a rejection (to accepted + 1) and double it after
            a full acceptance, so poor matches cost little verification time.

    Raises:
        ValueError: ``1 <= min_ngram <= max_ngram`` or ``max_draft >= 1`` violated.
    """

    max_ngram: int = 3
    min_ngram: int = 1
    max_draft: int = 10
    adaptive: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram}, {self.max_ngram}")
        if self.max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {self.max_draft}")


class PromptLookupDrafter(Drafter):
    """Drafts by n-gram lookup in prompt + generated tokens (see module docstring)."""

    name = "prompt_lookup"

    def __init__(self, config: PromptLookupConfig = PromptLookupConfig()):
        self.config = config

    def begin(self, request) -> None:
        super().begin(request)
        # index[n][ngram] = end position of its latest occurrence that has a successor
        self.index: dict[int, dict[tuple[int, ...], int]] = {
            n: {} for n in range(self.config.min_ngram, self.config.max_ngram + 1)
        }
        self.indexed = 0  # ends < indexed are in the index
        self.draft_len = self.config.max_draft
        self.lookups = self.hits = 0

    def _extend_index(self, tokens: list[int]) -> None:
        for end in range(self.indexed, len(tokens) - 1):
            for n, table in self.index.items():
                if end + 1 >= n:
                    table[tuple(tokens[end + 1 - n : end + 1])] = end
        self.indexed = max(self.indexed, len(tokens) - 1)

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        self._extend_index(tokens)
        self.lookups += 1
        for n in range(self.config.max_ngram, self.config.min_ngram - 1, -1):
            if len(tokens) <= n:
                continue
            end = self.index[n].get(tuple(tokens[-n:]))
            if end is not None:
                self.hits += 1
                return DraftTree.chain(continuation(tokens, end, min(self.draft_len, max_depth)))
        return None

    def on_accept(self, step) -> None:
        if not self.config.adaptive:
            return
        num_accepted = step.num_accepted
        if num_accepted == len(step.draft):
            self.draft_len = min(self.config.max_draft, max(1, self.draft_len) * 2)
        else:
            self.draft_len = num_accepted + 1

    def stats(self) -> dict:
        return {"lookups": self.lookups, "matches": self.hits}


register(
    MethodSpec(
        "prompt_lookup",
        PromptLookupConfig,
        PromptLookupDrafter,
        "n-gram lookup in prompt + output (input-guided aggressive decoding, arXiv 2205.10350)",
    )
)
