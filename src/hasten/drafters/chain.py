"""Drafting a chain token by token from a draft distribution: the one loop that draft-model
and self-speculative drafters share.

At every depth the draft logits are processed exactly like the target's
(:func:`hasten.sampling.process_logits`, the repetition penalty reading the committed tokens
plus the drafted ones), one token is chosen (argmax when greedy, a draw when sampling) and
fed back. With ``branch`` > 1 every depth also drafts the next-best siblings of the chain
token (a draft tree whose spine is the chain: SpecInfer's token tree, arXiv 2305.09781,
verified with recursive rejection sampling, arXiv 2402.14160).

Dims: V vocabulary, K drafted tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..sampling import SamplingParams, process_logits, seen_mask
from ..tree import DraftTree

__all__ = ["draft_chain"]


def _choose(
    scores: torch.Tensor, probs: torch.Tensor, greedy: bool, branch: int | None, generator: torch.Generator | None
) -> list[int]:
    """The chain token first, then its siblings (``branch`` tokens at most)."""
    if branch is None:
        if greedy:
            return [int(scores.argmax())]
        return [int(torch.multinomial(probs, 1, generator=generator))]
    width = min(branch, int((probs > 0).sum()))
    if greedy:
        return torch.topk(scores, width).indices.tolist()
    return torch.multinomial(probs, width, replacement=False, generator=generator).tolist()


def draft_chain(
    first_logits: torch.Tensor,
    feed: Callable[[int], torch.Tensor],
    params: SamplingParams,
    tokens: list[int],
    max_tokens: int,
    confidence_threshold: float,
    generator: torch.Generator | None,
    branch: int | None = None,
) -> DraftTree:
    """Draft a chain autoregressively from a draft distribution.

    Args:
        first_logits: (V,) draft logits for the token after ``tokens``.
        feed: ``feed(token) -> (V,)`` logits after appending ``token`` to the draft.
        params: sampling parameters (the draft's logits are processed like the target's).
        tokens: committed tokens (for the repetition penalty).
        max_tokens: most chain tokens to draft (>= 1).
        confidence_threshold: stop after a token whose draft probability is below this
            (fraction 0-1; 0 = never stop early).
        generator: RNG for draft sampling.
        branch: None for a plain chain; k >= 1 drafts up to k candidates per depth (top-k
            when greedy, k draws without replacement when sampling), the first carrying
            the chain on and the others as its siblings.

    Returns:
        A chain (or, with ``branch`` > 1, a tree); when sampling it carries ``draft_probs``
        (one row per node: the processed distribution its token was drawn from), so the
        engine applies the speculative sampling rule (lossless).
    """
    seen = seen_mask(tokens, first_logits.shape[-1], first_logits.device) if params.uses_history else None
    logits = first_logits
    drafted: list[int] = []
    parents: list[int] = []
    rows: list[torch.Tensor] = []
    parent = -1
    for depth in range(1, max_tokens + 1):
        scores = process_logits(logits.unsqueeze(0), params, None if seen is None else seen.unsqueeze(0))[0]
        probs = scores.softmax(-1)
        candidates = _choose(scores, probs, params.greedy, branch, generator)
        first_node = len(drafted)
        drafted += candidates
        parents += [parent] * len(candidates)
        rows += [probs] * len(candidates)
        parent = first_node  # the first candidate carries the chain on
        token = candidates[0]
        if seen is not None:
            seen[token] = True
        if depth == max_tokens or float(probs[token]) < confidence_threshold:
            break
        logits = feed(token)
    draft_probs = None if params.greedy else torch.stack(rows)
    return DraftTree(tuple(drafted), tuple(parents), draft_probs)
