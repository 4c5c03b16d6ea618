"""The Jacobi draft-and-verify loop shared by ``sjd``, ``gsd`` and ``lantern``.

Speculative Jacobi Decoding (Teng et al., "Accelerating Auto-regressive Text-to-Image
Generation with Training-free Speculative Jacobi Decoding", arXiv 2410.01699): keep a
window of draft tokens after the accepted prefix, each with the draft distribution it
was drawn from; one forward scores the last committed token and every draft; the drafts
are verified left to right (an acceptance rule, see :mod:`hasten.arimage.core`); the
accepted prefix plus the recovered/bonus token are committed; the target rows computed
for the positions after the commit point become the new draft distributions and the
drafts there are redrawn from them (the Jacobi iteration); positions entering the window
for the first time are initialised (``init``: ``"random"`` = uniform over the vocabulary;
``"spatial"`` = copy the committed token one row up, or draw from that position's draft
distribution when it is itself a draft, uniform on the first row).

Window: ``window`` = positions scored per forward = the most tokens one forward can
commit (window - 1 drafts + one recovered or bonus token); ``window = 1`` is the reference
sampler draw for draw (no drafts; the next token is the same ``torch.multinomial`` call
on the same generator).

Lossless when the acceptance rule is min(1, target/draft) with norm(max(0, target - draft))
recovery: every draft is drawn from its recorded distribution, independently of the
other drafts given the past, and verification conditions on the actual tokens before it.

Dims: K drafts (window - 1, fewer near the end), V vocabulary, R CFG rows, L tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

from .core import DecodeSettings
from .methods import ImageStats

__all__ = ["AcceptRule", "INITS", "jacobi_tokens"]

AcceptRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[list[int], int]]
"""(draft_tokens (K,), draft_probs (K, V), target_probs (K+1, V), generator) -> (accepted, next token)."""

INITS = ("random", "spatial")


def _initial_draft(
    position: int, committed: list[int], pending: dict[int, torch.Tensor], width: int, vocab: int, init: str
) -> torch.Tensor:
    """(V,) float64 draft distribution for a position entering the window."""
    above = position - width
    if init == "spatial" and 0 <= above < len(committed):
        return torch.nn.functional.one_hot(torch.tensor(committed[above]), vocab).double()
    if init == "spatial" and above in pending:
        return pending[above]
    return torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)


def jacobi_tokens(
    model, label: int, settings: DecodeSettings, generator: torch.Generator, window: int, init: str, accept: AcceptRule
) -> tuple[torch.Tensor, ImageStats]:
    """One discrete-token image by Jacobi drafting and speculative verification.

    Args:
        model: an :class:`hasten.arimage.adapters.ImageTokenModel`.
        label: class. settings: CFG / temperature / top-k / top-p (drafts are verified
            against exactly the distribution the reference sampler draws from).
        generator: the image's RNG (draft draws, acceptance uniforms, recovery draws).
        window: positions scored per forward (>= 1). init: ``"random"`` or ``"spatial"``.
        accept: the acceptance rule.

    Returns:
        ((L,) int64 tokens, counters).
    """
    length, vocab, width = model.seq_len, model.vocab_size, model.grid[1]
    rows = settings.rows
    class_ids = rows.class_ids(label, model.null_class)
    cache, stats = model.new_cache(), ImageStats()
    committed: list[int] = []
    last = 0  # the class slot at sequence position 0
    drafts: list[int] = []  # for positions len(committed) .. + len(drafts) - 1
    draft_rows: list[torch.Tensor] = []  # (V,) float64 each
    while len(committed) < length:
        n = len(committed)
        k = min(window - 1, length - n - 1)
        pending = dict(zip(range(n, n + len(draft_rows)), draft_rows))
        while len(drafts) < k:
            q = _initial_draft(n + len(drafts), committed, pending, width, vocab, init)
            pending[n + len(drafts)] = q
            draft_rows.append(q)
            drafts.append(int(torch.multinomial(q, 1, generator=generator)))
        drafts, draft_rows = drafts[:k], draft_rows[:k]
        inputs = torch.tensor([[last] + drafts], dtype=torch.int64).expand(len(rows.roles), -1)
        target_probs = settings.target_probs(model.forward(inputs, class_ids, cache))  # (k + 1, V)
        draft_probs = torch.stack(draft_rows) if draft_rows else target_probs[:0]
        accepted, nxt = accept(torch.tensor(drafts, dtype=torch.int64), draft_probs, target_probs, generator)
        a = len(accepted)
        committed += drafts[:a] + [nxt]
        cache.crop(n + a + 1)
        stats.forwards += 1
        stats.drafted += k
        stats.accepted += a
        stats.accepted_per_forward.append(a + 1)
        last = nxt
        draft_rows = list(target_probs[a + 1 :])  # Jacobi: redraw the rest from this forward's rows
        drafts = (
            [int(t) for t in torch.multinomial(target_probs[a + 1 :], 1, generator=generator).flatten()]
            if draft_rows
            else []
        )
    stats.tokens = length
    return torch.tensor(committed[:length], dtype=torch.int64), stats
