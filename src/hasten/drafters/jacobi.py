"""Jacobi lookahead drafting: an n-gram pool filled by Jacobi iteration of a lookahead window.

Implements lookahead decoding (Fu et al., "Break the Sequential Dependency of LLM
Inference Using Lookahead Decoding", arXiv 2402.02057) inside the draft-tree protocol:

- The *lookahead window* holds guesses for the next W positions. It is verified as one
  more chain of the draft tree, so the target's token at each window row (returned in
  ``VerifiedStep.target_tokens``) is the next Jacobi iterate of the following position:
  after a step that commits a + 1 tokens, the iterates for positions beyond the new root
  become the new window, topped up from the pool or, failing that, with prompt tokens
  drawn at random (as the paper initializes its window).
- The *n-gram pool* maps a token to up to ``pool_size`` n-grams (N tokens) that started
  with it, most recent kept. Every window row contributes the n-gram made of the last N-1
  tokens it saw and the target's token there; the prompt and committed output seed it too.
- The *verification branch*: up to G pool n-grams starting with the root are drafted
  (their N-1 continuation tokens), best (most recent) first, merged into one tree with the
  window; whatever the target agrees with is accepted.

Difference from the paper: its 2-D window (W positions x N-1 past iterates, attention
along diagonals) is collapsed to a single chain whose rows see the current iterate only,
so every harvested n-gram is exactly the target's next token after the N-1 tokens of that
row's context. This fits the engine's tree mask, and a window that happens to be right is
accepted like any other branch.

Glossary: W window length, N n-gram size, G verified pool candidates per step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..tree import DraftTree, tree_layout
from ._tree_build import tree_from_sequences
from .base import Drafter, MethodSpec, register

__all__ = ["JacobiConfig", "JacobiDrafter", "NgramPool", "window_ngrams"]


class NgramPool:
    """n-grams keyed by their first token, at most ``per_key`` per key, least recently
    added evicted first.

    Example: per_key 2; add (1, 2, 3), (1, 4, 5), (1, 2, 3), (1, 6, 7) ->
    candidates(1, 2) = [(6, 7), (2, 3)] ((4, 5) was the least recent).
    """

    def __init__(self, per_key: int):
        self.per_key = per_key
        self.table: dict[int, dict[tuple[int, ...], None]] = {}

    def add(self, ngram: tuple[int, ...]) -> None:
        followers = self.table.setdefault(ngram[0], {})
        rest = ngram[1:]
        followers.pop(rest, None)
        followers[rest] = None
        if len(followers) > self.per_key:
            del followers[next(iter(followers))]

    def candidates(self, token: int, count: int) -> list[tuple[int, ...]]:
        """Up to ``count`` continuations of ``token``, most recent first."""
        followers = self.table.get(token)
        if not followers or count < 1:
            return []
        return list(followers)[-count:][::-1]

    def __len__(self) -> int:
        return sum(len(f) for f in self.table.values())


def window_ngrams(context: list[int], window: list[int], outputs: list[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams one Jacobi step produced: for window row j (1-based), the last n-1
    tokens of ``context + window[:j]`` followed by the target's token ``outputs[j]`` there.

    Args:
        context: committed tokens up to the root (the root last).
        window: the window rows that were verified (those found in the tree).
        outputs: (len(window) + 1,) target token at the root row, then at each window row.
        n: n-gram size (>= 2).

    Example: context [1, 2], window [3, 4], outputs [9, 8, 7], n 3 ->
    [(2, 3, 8), (3, 4, 7)].
    """
    head = context[-(n - 1) :]
    seq = head + list(window)
    out = []
    for j in range(1, len(window) + 1):
        end = len(head) + j
        if end >= n - 1:
            out.append(tuple(seq[end - (n - 1) : end]) + (outputs[j],))
    return out


@dataclass(frozen=True)
class JacobiConfig:
    """Lookahead decoding settings. Each extra node costs verification time (SmolLM2 fp32
    on 2 CPU threads: about +15% per node for the first few), so the defaults are the
    smallest useful W and G, which measured best there; a GPU affords W, G of 5-15.

    Attributes:
        window: W, lookahead positions iterated per step; more finds n-grams faster and
            widens every forward.
        ngram: N, n-gram size; candidates are N-1 tokens long.
        candidates: G, most pool n-grams verified per step.
        pool_size: n-grams kept per first token.
        seed_from_context: also pool the n-grams of the prompt and the committed output.

    Raises:
        ValueError: ``window < 1``, ``ngram < 2``, ``candidates < 0`` or ``pool_size < 1``.
    """

    window: int = 1
    ngram: int = 4
    candidates: int = 1
    pool_size: int = 8
    seed_from_context: bool = True

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.ngram < 2:
            raise ValueError(f"ngram must be >= 2, got {self.ngram}")
        if self.candidates < 0:
            raise ValueError(f"candidates must be >= 0, got {self.candidates}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")


class JacobiDrafter(Drafter):
    """Lookahead decoding: pool candidates + one Jacobi window per tree (see module docstring)."""

    name = "jacobi"

    def __init__(self, config: JacobiConfig = JacobiConfig()):
        self.config = config

    def begin(self, request) -> None:
        super().begin(request)
        self.pool = NgramPool(self.config.pool_size)
        self.prompt = list(request.prompt_ids)
        self.rng = random.Random(0)
        self.window: list[int] = []
        self.harvested = 0  # committed end positions already pooled
        self.sent: tuple[int, list[int]] | None = None  # (committed length, window) of the last draft
        self.window_accepted = self.candidate_accepted = 0

    def _harvest_committed(self, tokens: list[int]) -> None:
        n = self.config.ngram
        for end in range(max(self.harvested, n - 1), len(tokens)):
            self.pool.add(tuple(tokens[end - n + 1 : end + 1]))
        self.harvested = len(tokens)

    def _fill_window(self, root: int) -> None:
        while len(self.window) < self.config.window:
            last = self.window[-1] if self.window else root
            known = self.pool.candidates(last, 1)
            self.window.append(known[0][0] if known else self.prompt[self.rng.randrange(len(self.prompt))])

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        if self.config.seed_from_context:
            self._harvest_committed(tokens)
        if self.sent is not None:  # the engine verified none of the last draft: shift the window
            self.window = self.window[len(tokens) - self.sent[0] :]
        root = tokens[-1]
        self._fill_window(root)
        candidates = self.pool.candidates(root, self.config.candidates)
        self.sent = (len(tokens), list(self.window))
        return tree_from_sequences([*candidates, self.window])

    def on_accept(self, step) -> None:
        if self.sent is None:
            return
        committed, window = self.sent
        children = tree_layout(step.draft.parents, step.draft.tokens).children
        rows, row = [0], 0
        for token in window:  # the window's path (it may be cut by the engine's node budget)
            node = children[row].get(token)
            if node is None:
                break
            row = node + 1
            rows.append(row)
        outputs = [
            step.target_tokens[r] if step.target_tokens is not None else int(step.scores[r].argmax()) for r in rows
        ]
        verified = window[: len(rows) - 1]
        for ngram in window_ngrams(step.tokens[:committed], verified, outputs, self.config.ngram):
            self.pool.add(ngram)
        accepted = step.num_accepted
        on_window = sum(1 for node in step.accepted if node + 1 in rows)
        self.window_accepted += on_window
        self.candidate_accepted += accepted - on_window
        self.window = outputs[accepted + 1 :]
        self.sent = None

    def stats(self) -> dict:
        return {
            "pool_ngrams": len(self.pool),
            "window_accepted": self.window_accepted,
            "candidate_accepted": self.candidate_accepted,
        }


register(
    MethodSpec(
        "jacobi",
        JacobiConfig,
        JacobiDrafter,
        "lookahead decoding: Jacobi window + n-gram pool, verified as one tree (arXiv 2402.02057)",
    )
)
