"""Suffix drafting: frequency-scored trees from the longest suffix match, in the request and
in an optional corpus datastore.

Implements the speculation of SuffixDecoding (Oliaro et al., "SuffixDecoding: Extreme
Speculative Decoding for Emerging AI Applications", arXiv 2411.04975) over the current
request, and retrieval from a corpus as in REST (He et al., "REST: Retrieval-Based
Speculative Decoding", arXiv 2311.08252):

1. Find the longest suffix of the committed tokens that occurred before: in the request
   (prompt + output so far) through an incremental n-gram index whose hits are extended
   backwards token by token up to ``max_match``; in the datastore through its reversed
   suffix index (:class:`hasten.datastore.Datastore`).
2. Take what followed the (most recent ``max_occurrences``) occurrences, each weighted by
   its match length, and score every continuation prefix by its weighted frequency
   (fraction 0-1 of the occurrences that continue that way).
3. Draft the best-scoring prefixes as a tree whose node count grows with the match length
   p: ``min(max_nodes, ceil(nodes_per_match * p))`` (SuffixDecoding's MAX_SPEC = alpha p):
   long matches are reliable, so they earn wide, deep trees; a 1-token match earns a few
   nodes.

The request index resets in ``begin()``; the datastore is read-only, so no request can
change another's drafts.

Glossary: *occurrence* = an earlier position where the matched suffix ends;
*continuation* = the tokens that followed it; *match length* p (tokens).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..datastore import Datastore
from ..ngram import SuffixIndex, continuation, match_reference  # noqa: F401  (re-exported)
from ..tree import DraftTree
from ._tree_build import merge_max, tree_from_scores
from .base import Drafter, MethodSpec, register

__all__ = ["SuffixConfig", "SuffixDrafter", "SuffixIndex", "continuation_scores"]


def continuation_scores(
    weighted: list[tuple[list[int], float]], pseudo_count: float = 0.0
) -> dict[tuple[int, ...], float]:
    """Score every prefix of the continuations by the weight share that follows it.

    Args:
        weighted: (continuation tokens, weight > 0) per occurrence.
        pseudo_count: occurrences (of mean weight) added to the total as mass for unseen
            continuations; 0 = plain weighted frequency.

    Returns:
        {prefix: fraction 0-1 of the total weight whose continuation starts with it}.

    Example: [([5, 6], 2), ([5, 7], 1), ([8], 1)] ->
    {(5,): 0.75, (5, 6): 0.5, (5, 7): 0.25, (8,): 0.25}; with pseudo_count 1 every
    score is 3/4 of that.
    """
    if not weighted:
        return {}
    total = sum(w for _, w in weighted) * (1 + pseudo_count / len(weighted))
    scores: dict[tuple[int, ...], float] = {}
    for tokens, weight in weighted:
        for j in range(1, len(tokens) + 1):
            path = tuple(tokens[:j])
            scores[path] = scores.get(path, 0.0) + weight / total
    return scores


@dataclass(frozen=True)
class SuffixConfig:
    """Suffix drafting settings.

    Attributes:
        max_nodes: node budget cap per step; more can catch more continuations but makes
            verification dearer.
        nodes_per_match: tree nodes earned per matched token (alpha); higher drafts wider
            trees on short matches.
        max_depth: deepest draft node (tokens).
        max_match: longest suffix match measured (tokens).
        index_ngram: longest n-gram kept in the request's hash index; matches are
            extended beyond it by comparison.
        max_occurrences: occurrences (most recent in the request, evenly spread in the
            datastore) whose continuations are scored.
        min_prob: continuations below this weighted frequency (fraction 0-1) are not
            drafted.
        pseudo_count: occurrences added to the total as mass for unseen continuations;
            higher = less trust in suffixes seen only a few times.
        datastore: a :class:`~hasten.datastore.Datastore` or the path of one built by
            ``hasten datastore build`` with this model's tokenizer; None = request only.
        datastore_min_match: shortest datastore match used (tokens); a 1-token match in a
            large corpus predicts little.

    Raises:
        ValueError: a non-positive size or a probability outside [0, 1].
    """

    max_nodes: int = 12
    nodes_per_match: float = 2.0
    max_depth: int = 8
    max_match: int = 32
    index_ngram: int = 4
    max_occurrences: int = 16
    min_prob: float = 0.1
    pseudo_count: float = 1.0
    datastore: Any = field(default=None, compare=False)
    datastore_min_match: int = 2

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_depth", "max_match", "index_ngram", "max_occurrences", "datastore_min_match"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nodes_per_match <= 0:
            raise ValueError(f"nodes_per_match must be > 0, got {self.nodes_per_match}")
        if self.pseudo_count < 0:
            raise ValueError(f"pseudo_count must be >= 0, got {self.pseudo_count}")
        if not 0 <= self.min_prob <= 1:
            raise ValueError(f"min_prob must be in [0, 1], got {self.min_prob}")


class SuffixDrafter(Drafter):
    """Drafts frequency-scored trees from suffix matches (see module docstring)."""

    name = "suffix"

    def __init__(self, config: SuffixConfig = SuffixConfig()):
        self.config = config
        store = config.datastore
        self.datastore = Datastore.load(store) if isinstance(store, (str, os.PathLike)) else store

    def begin(self, request) -> None:
        super().begin(request)
        if self.datastore is not None and self.datastore.max_token >= request.vocab_size:
            raise ValueError(
                f"the datastore holds token id {self.datastore.max_token} but the model's vocabulary "
                f"has {request.vocab_size}; build it with this model's tokenizer"
            )
        self.index = SuffixIndex(self.config.index_ngram)
        self.lookups = self.matches = self.store_matches = 0
        self.matched_tokens = 0

    def _request_candidates(self, tokens: list[int]) -> tuple[int, dict[tuple[int, ...], float]]:
        config = self.config
        occurrences = self.index.match(tokens, config.max_match, config.max_occurrences)
        if not occurrences:
            return 0, {}
        weighted = [(continuation(tokens, end, config.max_depth), float(length)) for end, length in occurrences]
        return max(length for _, length in occurrences), continuation_scores(weighted, config.pseudo_count)

    def _store_candidates(self, tokens: list[int]) -> tuple[int, dict[tuple[int, ...], float]]:
        config = self.config
        matched, found = self.datastore.continuations(
            tokens,
            max_match=config.max_match,
            min_match=config.datastore_min_match,
            max_occurrences=config.max_occurrences,
            length=config.max_depth,
        )
        if not found:
            return 0, {}
        return matched, continuation_scores([(c, 1.0) for c in found], config.pseudo_count)

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        config = self.config
        self.index.extend(tokens)
        self.lookups += 1
        matched, scores = self._request_candidates(tokens)
        if self.datastore is not None:
            store_matched, store_scores = self._store_candidates(tokens)
            if store_scores:
                self.store_matches += 1
                merge_max(scores, store_scores)
                matched = max(matched, store_matched)
        if not scores:
            return None
        budget = min(config.max_nodes, max(1, math.ceil(config.nodes_per_match * matched)))
        tree = tree_from_scores(scores, budget, config.min_prob)
        if tree is not None:
            self.matches += 1
            self.matched_tokens += matched
        return tree

    def stats(self) -> dict:
        return {
            "lookups": self.lookups,
            "matches": self.matches,
            "datastore_matches": self.store_matches,
            "mean_match_length": self.matched_tokens / self.matches if self.matches else 0.0,
        }


register(
    MethodSpec(
        "suffix",
        SuffixConfig,
        SuffixDrafter,
        "frequency-scored trees from suffix matches in the request and a datastore "
        "(SuffixDecoding arXiv 2411.04975, REST arXiv 2311.08252)",
    )
)
