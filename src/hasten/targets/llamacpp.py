"""The decode loop's target on llama.cpp (:class:`LlamaCppTarget`), the :class:`~hasten.targets.Target`
implementation for :class:`hasten.backends.llamacpp.LlamaCppModel` (a GGUF file run by llama.cpp kernels).

``hasten.backends.llamacpp`` re-exports :class:`LlamaCppTarget`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from ..tree import DraftTree, tree_layout
from .base import normalize_eos

if TYPE_CHECKING:
    from ..backends.llamacpp import LlamaCppCache, LlamaCppModel

__all__ = ["LlamaCppTarget"]


class LlamaCppTarget:
    """The decode loop's target on llama.cpp: the same methods as the engine's
    transformers target (forward, verify_forward, cache operations, cost curve)."""

    backend = "llama.cpp"
    compiled = None

    def __init__(self, model: LlamaCppModel):
        self.model = model
        self.device = torch.device("cpu")
        self.context_length = model.context_length
        self.vocab_size = model.vocab_size
        self.forwards = 0
        self.forward_seconds = 0.0

    @staticmethod
    def supported_methods() -> list[str]:
        from ..drafters.base import get_method, list_methods

        return [name for name in list_methods() if get_method(name).model_free]

    def eos_ids(self, eos_token_id) -> set[int]:
        return normalize_eos(eos_token_id, default=self.model.eos_token_ids)

    def new_cache(self, static: bool = False) -> LlamaCppCache:
        return self.model.new_cache()

    def max_nodes(self, cache: LlamaCppCache) -> int:
        """Most draft nodes the next verification may have: fewer leaves than sequence ids,
        and root + nodes must fit in the free KV cells."""
        return max(0, min(self.model.max_sequences - 1, self.context_length - self.cache_length(cache) - 1))

    def cost_curve(self, refresh: bool = False):
        from ..cost import load_or_measure

        return load_or_measure(self.model, refresh=refresh)

    # --- cache bookkeeping -------------------------------------------------------------
    def _check(self, cache: LlamaCppCache) -> None:
        if cache.generation != self.model._live:
            raise RuntimeError(
                "this llama.cpp cache is no longer live: a newer cache was made on the same model "
                "(one generation at a time per LlamaCppModel)"
            )

    def cache_length(self, cache: LlamaCppCache) -> int:
        """Tokens the engine has appended (cached + awaiting refeed + pending rows)."""
        return cache.cached + len(cache.refeed) + cache.pending

    def _settle(self, cache: LlamaCppCache) -> None:
        """Drop the rows of a verification that :meth:`keep_rows` did not compact."""
        for s in cache.branch_seqs:
            if s != cache.seq:
                self.model.seq_rm(s, -1, -1)
        if cache.pending:
            self.model.seq_rm(cache.seq, cache.cached, -1)
        cache.branch_seqs, cache.node_seq, cache.row_tokens, cache.first_rows = [], [], [], []
        cache.pending = 0

    def rollback(self, cache: LlamaCppCache, length: int) -> None:
        """Keep the first ``length`` tokens (committed, or rows of a chain verification)."""
        self._check(cache)
        if cache.pending and not cache.branch_seqs and length > cache.cached:
            cache.cached, cache.pending = cache.cached + cache.pending, 0  # chain rows stay, in order
        self._settle(cache)
        if length >= cache.cached:
            del cache.refeed[length - cache.cached :]
            return
        self.model.seq_rm(cache.seq, length, -1)
        cache.cached, cache.refeed = length, []

    def _decode(self, cache: LlamaCppCache, tokens: list[int], outputs: list[bool]) -> torch.Tensor:
        """Append ``tokens`` to the committed sequence (in ``batch_size`` chunks); logits of
        the rows flagged in ``outputs``."""
        model, seq = self.model, [cache.seq]
        pieces = []
        for lo in range(0, len(tokens), model.batch_size):
            chunk = tokens[lo : lo + model.batch_size]
            logits = model.decode(
                chunk,
                list(range(cache.cached, cache.cached + len(chunk))),
                [seq] * len(chunk),
                outputs[lo : lo + len(chunk)],
            )
            cache.cached += len(chunk)
            if len(logits):
                pieces.append(logits)
        if not pieces:
            return torch.empty(0, model.vocab_size)
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    # --- forwards ----------------------------------------------------------------------
    def forward(self, cache: LlamaCppCache, tokens: list[int], *, last_only: bool = False, **_: Any) -> torch.Tensor:
        """Logits (rows, V) for ``tokens`` appended to the committed tokens (rows = 1 if
        ``last_only``)."""
        self._check(cache)
        self._settle(cache)
        refeed, cache.refeed = cache.refeed, []
        want = [False] * len(refeed) + ([False] * (len(tokens) - 1) + [True] if last_only else [True] * len(tokens))
        self.forwards += 1
        start = time.perf_counter()
        try:
            return self._decode(cache, refeed + list(tokens), want)
        finally:
            self.forward_seconds += time.perf_counter() - start

    def verify_forward(self, cache: LlamaCppCache, root: int, draft: DraftTree) -> torch.Tensor:
        """Logits (N+1, V) for the root and every draft node in one ``llama_decode``; the
        rows stay pending until :meth:`keep_rows` (or the next call) settles them."""
        if draft.is_chain:
            logits = self.forward(cache, [root, *draft.tokens])
            cache.cached -= len(draft) + 1
            cache.pending = len(draft) + 1
            return logits
        self._check(cache)
        self._settle(cache)
        model = self.model
        n = len(draft)
        children: list[list[int]] = [[] for _ in range(n + 1)]  # per row, child nodes in index (= best-first) order
        for node, parent in enumerate(draft.parents):
            children[parent + 1].append(node)
        first = [0]
        while children[first[-1]]:
            first.append(children[first[-1]][0] + 1)
        on_first = set(first)
        order = first + [node + 1 for node in range(n) if node + 1 not in on_first]  # rows in batch order
        leaves = [row for row in order if row and not children[row]]
        free = (s for s in range(model.max_sequences) if s != cache.seq)
        leaf_seq = {leaf: cache.seq if leaf == first[-1] else next(free) for leaf in leaves}
        row_seqs: list[list[int]] = [[] for _ in range(n + 1)]
        for leaf, s in leaf_seq.items():
            row = leaf
            while row > 0:
                row_seqs[row].append(s)
                row = draft.parents[row - 1] + 1
            row_seqs[0].append(s)
        refeed, cache.refeed = cache.refeed, []
        if refeed:  # committed tokens first, in the committed sequence only
            self._decode(cache, refeed, [False] * len(refeed))
        for s in leaf_seq.values():
            if s != cache.seq:
                model.seq_cp(cache.seq, s)
        depths = tree_layout(draft.parents).depths
        row_tokens = [root, *draft.tokens]
        self.forwards += 1
        start = time.perf_counter()
        try:
            logits = model.decode(
                [row_tokens[r] for r in order],
                [cache.cached + depths[r] for r in order],
                [row_seqs[r] for r in order],
                [True] * (n + 1),
            )
        finally:
            self.forward_seconds += time.perf_counter() - start
            cache.branch_seqs = sorted(set(leaf_seq.values()))
            cache.pending = n + 1
        cache.node_seq = [seqs[0] for seqs in row_seqs]
        cache.row_tokens, cache.first_rows = row_tokens, first
        out = torch.empty_like(logits)
        out[torch.tensor(order)] = logits
        return out

    def keep_rows(self, cache: LlamaCppCache, start: int, rows: list[int]) -> None:
        """Keep the committed tokens plus the verification rows ``rows`` (the root and
        the accepted path, in order) and drop every other row.

        Rows on the tree's first path are contiguous cells right after the committed
        ones, so they are kept in place; accepted rows after the path leaves the first
        branch are dropped from the cache and fed again in front of the next decode
        (their cells would otherwise sit after freed cells and break the in-order
        invariant of :class:`LlamaCppCache`)."""
        self._check(cache)
        if start != cache.cached:
            raise RuntimeError(f"keep_rows from {start} but {cache.cached} tokens are cached")
        if not cache.branch_seqs:  # a chain: keep a prefix of its rows
            if rows != list(range(len(rows))):
                raise ValueError("a chain verification keeps a prefix of its rows")
            self.rollback(cache, start + len(rows))
            return
        in_place = 0
        while (
            in_place < len(rows) and in_place < len(cache.first_rows) and rows[in_place] == cache.first_rows[in_place]
        ):
            in_place += 1
        keep_seq = cache.node_seq[rows[-1]]
        for s in cache.branch_seqs:
            if s != keep_seq:
                self.model.seq_rm(s, -1, -1)
        self.model.seq_rm(keep_seq, start + in_place, -1)
        cache.refeed = [cache.row_tokens[r] for r in rows[in_place:]]
        cache.seq, cache.cached, cache.pending = keep_seq, start + in_place, 0
        cache.branch_seqs, cache.node_seq, cache.row_tokens, cache.first_rows = [], [], [], []
