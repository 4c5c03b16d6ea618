"""Hierarchical self-speculative drafting for long prompts: a partial-cache target drafts
for the full one, and a cheap drafter drafts for it (TriForce).

Implements the two-level speculation of TriForce (Sun et al., "TriForce: Lossless
Acceleration of Long Sequence Generation with Hierarchical Speculative Decoding",
arXiv 2404.11912):

- *Level 1* is the target model itself reading a small KV cache gathered from the
  engine's full cache: the first ``sink_tokens`` (attention sinks), the last
  ``recent_tokens`` committed tokens, and the ``retrieval_tokens`` worth of
  ``chunk_size``-token chunks of older context most relevant to the current query
  (retrieval-based drafting). A chunk's relevance in each layer is the attention the
  latest root token's query pays to the chunk's mean key (softmax over chunks, summed
  over heads); each layer keeps its own top chunks. Queries are captured during level-1
  forwards by per-instance pre-hooks on the attention modules (removed right after), with
  the standard rotate-half rotary embedding applied; the selection is refreshed every
  ``refresh_every`` steps. On models whose attention has no ``q_proj`` the most recent
  chunks are kept instead. Every entry is copied from the full cache (exact keys and
  values), so level 1 differs from the target only in what it attends to.
- *Level 2* drafts for level 1: prompt lookup (an n-gram index over prompt + output that
  also follows level 1's own speculative tokens) or a draft model (``level2=`` a module or
  ``"self:k"``). Level 1 verifies level 2's chain in one forward, exactly as the engine
  verifies level 1's: greedy keeps the longest agreeing prefix plus level 1's own next
  token; sampling applies the speculative sampling rule (a prompt-lookup token counts as
  drawn from a point mass), so level 1's tokens are exact samples of level 1's
  distribution and are handed to the engine with those distributions. The full model
  then verifies them: greedy and sampled output are exactly plain decoding's.
- Below ``min_context`` committed tokens level 1 would read almost the whole cache, so
  level 2's draft goes to the full model directly.

Memory: the partial cache holds ``sink + retrieval + recent (+ up to max_draft)`` tokens
in every layer, i.e. ``tokens * layers * 2 * kv_heads * head_dim * bytes``; for
SmolLM2-135M in fp32 (30 layers, 3 KV heads of 64) that is 45 KiB per token, 45 MiB for
the default 4 + 768 + 256 tokens (a 4,000-token full cache is 176 MiB), plus the tokens
committed since the last refresh. It is rebuilt by gathering from the full cache at each
refresh. The chunk mean keys add
``chunks * layers * kv_heads * head_dim * bytes`` (1/(2*chunk_size) of the full cache:
5.5 MiB at 4,000 tokens). ``stats()`` reports both.

Glossary: *level-1 tokens* = the draft the full model verifies; *level-2 chain* = the
draft level 1 verifies. Dims: S committed tokens in the full cache, P partial-cache
tokens, V vocabulary, C chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

from .. import kv
from ..ngram import NgramIndex
from ..sampling import presence_rows, process_logits, seen_mask
from ..tree import DraftTree
from ..verify import speculative_sample_accept
from .base import Drafter, DraftRequest, MethodSpec, register
from .draft_model import DraftModelConfig, DraftModelDrafter

__all__ = ["HierarchicalConfig", "HierarchicalDrafter", "NgramIndex", "select_positions", "chunk_relevance"]


@dataclass(frozen=True)
class HierarchicalConfig:
    """TriForce settings.

    Attributes:
        sink_tokens: first tokens always kept (attention sinks).
        recent_tokens: latest committed tokens always kept.
        chunk_size: tokens per retrieval chunk (C).
        retrieval_tokens: tokens of retrieved chunks kept per layer; more = level 1 closer
            to the full model (higher acceptance) and more expensive.
        refresh_every: steps between chunk re-selections.
        max_draft: most level-1 tokens drafted per step.
        confidence_threshold: stop drafting after a level-1 token whose level-1
            probability is below this (fraction 0-1; 0 = never stop early).
        level2: ``"prompt_lookup"``, None (level 1 drafts alone), or a draft model for
            level 2 (an ``nn.Module`` with the target's vocabulary, or ``"self:k"``).
        level2_max_draft: most tokens level 2 drafts per level-1 forward; the length
            adapts (accepted + 1 after a rejection, doubled after a full acceptance) so
            poor level-2 drafts cost level 1 few rows.
        max_ngram / min_ngram: n-gram sizes prompt lookup matches (longest first).
        min_context: committed tokens below which level 2 drafts for the full model
            directly; None = twice the partial cache budget.

    Raises:
        ValueError: a field outside its range.
    """

    sink_tokens: int = 4
    recent_tokens: int = 256
    chunk_size: int = 16
    retrieval_tokens: int = 768
    refresh_every: int = 8
    max_draft: int = 6
    confidence_threshold: float = 0.4
    level2: Any = "prompt_lookup"
    level2_max_draft: int = 4
    max_ngram: int = 3
    min_ngram: int = 2
    min_context: int | None = None

    def __post_init__(self) -> None:
        if self.sink_tokens < 0 or self.recent_tokens < 1 or self.chunk_size < 1 or self.retrieval_tokens < 0:
            raise ValueError("need sink_tokens >= 0, recent_tokens >= 1, chunk_size >= 1, retrieval_tokens >= 0")
        if self.refresh_every < 1 or self.max_draft < 1 or self.level2_max_draft < 1:
            raise ValueError("refresh_every, max_draft and level2_max_draft must be >= 1")
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram}, {self.max_ngram}")
        if not 0 <= self.confidence_threshold <= 1:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.min_context is not None and self.min_context < 0:
            raise ValueError(f"min_context must be >= 0, got {self.min_context}")
        if isinstance(self.level2, str) and self.level2 != "prompt_lookup" and not self.level2.startswith("self:"):
            raise ValueError(f"level2 must be 'prompt_lookup', None, a draft model or 'self:k', got {self.level2!r}")

    @property
    def partial_tokens(self) -> int:
        """Committed tokens the partial cache holds (sink + retrieved + recent)."""
        return self.sink_tokens + self.retrieval_tokens + self.recent_tokens


def chunk_relevance(queries: torch.Tensor, chunk_keys: torch.Tensor) -> torch.Tensor:
    """Attention mass each layer's query pays to each chunk's mean key.

    Args:
        queries: (layers, heads, head_dim) rotary-embedded queries of one token.
        chunk_keys: (layers, kv_heads, chunks, head_dim) mean keys per chunk.

    Returns:
        (layers, chunks) float: per head, softmax over chunks of q.k/sqrt(head_dim); summed
        over heads (query head h reads key head h // (heads / kv_heads)).

    Example: one layer, one head, keys [[1, 0], [0, 1]] and query [10, 0] -> the first
    chunk gets almost all the mass.
    """
    groups = queries.shape[1] // chunk_keys.shape[1]
    keys = chunk_keys.repeat_interleave(groups, dim=1).to(queries.dtype)
    logits = torch.einsum("lhd,lhcd->lhc", queries, keys) / math.sqrt(queries.shape[-1])
    return logits.softmax(-1).sum(1)


def select_positions(cached: int, sink: int, recent: int, chunk_size: int, chunks: list[int]) -> list[int]:
    """Positions kept in a partial cache: sink, the given chunks, the recent window.

    Example: cached 20, sink 2, recent 4, chunk_size 3, chunks [1] ->
    [0, 1, 5, 6, 7, 16, 17, 18, 19].
    """
    recent_start = max(sink, cached - recent)
    picked = set(range(min(sink, cached))) | set(range(recent_start, cached))
    for c in chunks:
        picked |= set(range(sink + c * chunk_size, min(sink + (c + 1) * chunk_size, recent_start)))
    return sorted(picked)


class _QueryCapture:
    """Per-instance pre-hooks on each attention module that keep the rotary-embedded
    query of row 0 (the root) of the next forward; removed on exit."""

    def __init__(self, layers):
        self.layers = layers
        self.queries: dict[int, torch.Tensor] = {}

    def _hook(self, index: int, module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        rows = module.q_proj(hidden[:, :1])
        q = rows.view(-1, module.head_dim)  # (heads, head_dim)
        position_embeddings = kwargs.get("position_embeddings")
        if position_embeddings is not None:
            cos, sin = (t[0, 0].to(q.dtype) for t in position_embeddings)
            half = q.shape[-1] // 2
            q = q * cos + torch.cat([-q[:, half:], q[:, :half]], dim=-1) * sin
        self.queries[index] = q.detach()

    def __enter__(self):
        self.handles = [
            layer.self_attn.register_forward_pre_hook(
                lambda module, args, kwargs, i=i: self._hook(i, module, args, kwargs), with_kwargs=True
            )
            for i, layer in enumerate(self.layers)
        ]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False


def _attention_layers(model: torch.nn.Module):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not all(
        hasattr(getattr(l, "self_attn", None), "q_proj") and hasattr(l.self_attn, "head_dim") for l in layers
    ):
        return None
    return layers


class HierarchicalDrafter(Drafter):
    """TriForce drafting (see module docstring)."""

    needs_torch_target = True
    name = "hierarchical"
    proposes_distributions = True

    def __init__(self, config: HierarchicalConfig = HierarchicalConfig()):
        self.config = config

    def begin(self, request) -> None:
        super().begin(request)
        if request.target_cache is None:
            raise ValueError("hierarchical drafts from the engine's target cache; run it through hasten.generate")
        cfg = self.config
        self.model = request.target
        self.cache_kw = kv.cache_kwarg(self.model)
        self.attn_layers = _attention_layers(self.model)
        self.min_context = 2 * cfg.partial_tokens if cfg.min_context is None else cfg.min_context
        self.index = NgramIndex(cfg.min_ngram, cfg.max_ngram) if cfg.level2 == "prompt_lookup" else None
        self.level2_model = None
        if cfg.level2 is not None and cfg.level2 != "prompt_lookup":
            self.level2_model = DraftModelDrafter(
                DraftModelConfig(draft_model=cfg.level2, max_draft=cfg.level2_max_draft, confidence_threshold=0.0)
            )
            self.level2_model.begin(
                DraftRequest(request.prompt_ids, request.target, request.params, request.generator, request.vocab_size)
            )
        self.query: torch.Tensor | None = None  # (layers, heads, head_dim)
        self.chunks: list[list[int]] | None = None  # per layer: selected chunk indices
        self.since_refresh = 0
        self.query_selected = False
        self.steps = self.level1_forwards = self.level1_tokens = self.refreshes = 0
        self.level2_proposed = self.level2_accepted = self.direct_steps = 0
        self.partial: DynamicCache | None = None
        self.partial_len = self.synced = self.chunk_key_bytes = 0
        self.level2_len = cfg.level2_max_draft
        self.direct = False  # the last draft came from level 2 directly

    # level 2 ---------------------------------------------------------------------------
    def _level2(self, context: list[int], length: int) -> DraftTree:
        if length < 1:
            return DraftTree.chain([])
        if self.index is not None:
            self.index.sync(context)
            return DraftTree.chain(self.index.lookup(context, length))
        if self.level2_model is not None:
            draft = self.level2_model.propose(context, length)
            return draft if draft is not None and draft.is_chain else DraftTree.chain([])
        return DraftTree.chain([])

    # partial cache ---------------------------------------------------------------------
    def _refresh(self, cached: int) -> None:
        cfg = self.config
        full = self.request.target_cache
        recent_start = max(cfg.sink_tokens, cached - cfg.recent_tokens)
        n_chunks = max(0, (recent_start - cfg.sink_tokens) // cfg.chunk_size)
        keep = min(n_chunks, cfg.retrieval_tokens // cfg.chunk_size)
        layers = kv.num_layers(full)
        if keep == 0:
            self.chunks = [[] for _ in range(layers)]
        elif self.query is None or self.query.shape[0] != layers:
            self.chunks = [list(range(n_chunks - keep, n_chunks)) for _ in range(layers)]  # most recent
        else:
            span = slice(cfg.sink_tokens, cfg.sink_tokens + n_chunks * cfg.chunk_size)
            keys = kv.key_span(full, span.start, span.stop)  # (layers, kvh, n*C, hd)
            means = keys.unflatten(2, (n_chunks, cfg.chunk_size)).mean(3)
            self.chunk_key_bytes = means.numel() * means.element_size()
            scores = chunk_relevance(self.query, means)
            self.chunks = scores.topk(keep, dim=-1).indices.sort(dim=-1).values.tolist()
            self.query_selected = True
        self.since_refresh = 0
        self.refreshes += 1

    def _partial_cache(self, cached: int) -> DynamicCache:
        """The partial cache for ``cached`` committed tokens: rebuilt from the full cache
        after a refresh; otherwise the previous one, with drafted entries dropped and the
        newly committed tokens' exact entries appended (the recent window grows until
        the next refresh)."""
        cfg = self.config
        full = self.request.target_cache
        if self.partial is None or self.since_refresh == 0:
            positions = [
                select_positions(cached, cfg.sink_tokens, cfg.recent_tokens, cfg.chunk_size, chunks)
                for chunks in self.chunks
            ]
            self.partial = kv.gather_positions(full, positions, self.model)
        else:
            kv.rollback(self.partial, self.partial_len)
            if cached > self.synced:
                kv.append_span(self.partial, full, self.synced, cached)
        self.synced = cached
        self.partial_len = kv.cache_length(self.partial)
        return self.partial

    def _level1_forward(self, partial, rows: list[int], start: int, capture: bool) -> torch.Tensor:
        """Logits (len(rows), V) of level 1 for ``rows`` at positions start.. appended to ``partial``."""
        n = len(rows)
        device = kv.cache_device(self.request.target_cache)
        # rows are a chain: the model's own causal masks over the partial cache (per layer
        # type, so sliding-window layers get theirs), at the rows' true positions
        kwargs = {
            self.cache_kw: partial,
            "use_cache": True,
            "position_ids": torch.arange(start, start + n, device=device).unsqueeze(0),
        }
        ids = torch.tensor([rows], dtype=torch.long, device=device)
        self.level1_forwards += 1
        if capture and self.attn_layers is not None:
            with _QueryCapture(self.attn_layers) as captured:
                logits = self.model(input_ids=ids, **kwargs).logits[0]
            self.query = torch.stack([captured.queries[i] for i in range(len(self.attn_layers))])
            return logits
        return self.model(input_ids=ids, **kwargs).logits[0]

    # drafting ---------------------------------------------------------------------------
    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        cfg = self.config
        cached = len(tokens) - 1
        limit = min(cfg.max_draft, max_depth)
        self.steps += 1
        self.direct = cached < self.min_context
        if self.direct:
            self.direct_steps += 1
            draft = self._level2(tokens, min(self.level2_len, limit))
            return draft if len(draft) else None
        if (
            self.chunks is None
            or self.since_refresh >= cfg.refresh_every
            or (self.query is not None and not self.query_selected)
        ):
            self._refresh(cached)
        partial = self._partial_cache(cached)
        self.since_refresh += 1
        capture = self.attn_layers is not None and (self.query is None or self.since_refresh >= cfg.refresh_every)
        return self._draft_level1(partial, tokens, limit, capture)

    def _draft_level1(self, partial, tokens: list[int], limit: int, capture: bool) -> DraftTree:
        params = self.request.params
        cached, base = len(tokens) - 1, kv.cache_length(partial)
        out: list[int] = []
        out_probs: list[torch.Tensor] = []
        pending = tokens[-1]
        seen = None
        if params.uses_history:
            seen = seen_mask(tokens, self.request.vocab_size)
        while len(out) < limit:
            chain = self._level2(tokens + out, min(self.level2_len, limit - len(out) - 1))
            logits = self._level1_forward(partial, [pending, *chain.tokens], cached + len(out), capture)
            capture = False
            scores = self._process(logits, chain, seen)
            accepted, nxt, rows = self._accept(chain, scores)
            self.level2_proposed += len(chain)
            self.level2_accepted += accepted
            if len(chain):
                self._adapt(accepted, len(chain))
            new = list(chain.tokens[:accepted]) + [nxt]
            kv.rollback(partial, base + len(out) + 1 + accepted)  # keep pending + accepted chain
            out += new
            out_probs += rows
            if seen is not None:
                seen[torch.tensor(new)] = True
            pending = nxt
            if float(out_probs[-1][nxt]) < self.config.confidence_threshold:
                break
        out, out_probs = out[:limit], out_probs[:limit]
        self.level1_tokens += len(out)
        probs = None if params.greedy else torch.stack(out_probs)
        return DraftTree.chain(out, probs)

    def _adapt(self, accepted: int, proposed: int) -> None:
        limit = self.config.level2_max_draft
        self.level2_len = min(limit, 2 * self.level2_len) if accepted == proposed else accepted + 1

    def on_accept(self, step) -> None:
        if self.direct and len(step.draft):
            self._adapt(step.num_accepted, len(step.draft))

    def _process(self, logits: torch.Tensor, chain: DraftTree, seen: torch.Tensor | None) -> torch.Tensor:
        rows_seen = None
        if seen is not None:
            k = len(chain)
            path = torch.tensor(chain.tokens, dtype=torch.long) if k else None
            ancestors = torch.ones(k, k, dtype=torch.bool).tril() if k else None
            rows_seen = presence_rows(seen, path, ancestors).to(logits.device)
        return process_logits(logits, self.request.params, rows_seen)

    def _accept(self, chain: DraftTree, scores: torch.Tensor) -> tuple[int, int, list[torch.Tensor]]:
        """Level 1 verifies level 2's chain: (accepted count, next token, level-1
        distribution of each emitted token)."""
        probs = scores.softmax(-1)
        k = len(chain)
        if self.request.params.greedy:
            choice = scores.argmax(-1).tolist()
            accepted = 0
            while accepted < k and chain.tokens[accepted] == choice[accepted]:
                accepted += 1
            return accepted, choice[accepted], [probs[i] for i in range(accepted + 1)]
        draft = torch.tensor(chain.tokens, dtype=torch.long, device=probs.device)
        if chain.draft_probs is not None:
            draft_probs = chain.draft_probs.to(probs)
        else:  # a deterministic (prompt-lookup) token is a draw from a point mass
            draft_probs = torch.zeros(k, probs.shape[-1], dtype=probs.dtype, device=probs.device)
            draft_probs[torch.arange(k), draft] = 1.0
        path, nxt = speculative_sample_accept(draft, draft_probs, probs, self.request.generator)
        return len(path), nxt, [probs[i] for i in range(len(path) + 1)]

    def stats(self) -> dict:
        bytes_per_token = kv.bytes_per_token(self.request.target_cache)
        return {
            "level1_forwards": self.level1_forwards,
            "level1_tokens": self.level1_tokens,
            "level2_proposed": self.level2_proposed,
            "level2_accepted": self.level2_accepted,
            "direct_steps": self.direct_steps,
            "refreshes": self.refreshes,
            "partial_cache_tokens": self.partial_len,
            "partial_cache_bytes": self.partial_len * bytes_per_token,
            "chunk_key_bytes": self.chunk_key_bytes,
        }


register(
    MethodSpec(
        "hierarchical",
        HierarchicalConfig,
        HierarchicalDrafter,
        "long prompts: the target on a small retrieved KV cache drafts, prompt lookup drafts for it "
        "(TriForce, arXiv 2404.11912)",
    )
)
