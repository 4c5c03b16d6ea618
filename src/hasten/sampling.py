"""Sampling parameters and the one logits-processing function every decoding path uses.

Plain decoding and every speculative path turn target logits into a next-token choice
through :func:`process_logits`, so the distribution a drafted position is verified against
is exactly the distribution plain decoding samples from.

Dims: N rows (positions being scored), V vocabulary.

Processing order (the order ``transformers.generate`` applies them): repetition penalty,
then — only when sampling — temperature, top-k, top-p.

Position-keyed sampling (:class:`PositionDraws`): the token at sequence position t is the
inverse CDF of softmax(scores_t) at a uniform u_t that depends only on (seed, t). Each
token is still an exact draw from its processed distribution, independently across
positions, but the draw no longer depends on how many rows were scored before it. So a
verification row that predicts position t with the same prefix as plain decoding chooses
the same token as plain decoding: with a draft-free (deterministic) drafter, sampled
output is token-identical to plain sampled output for the same seed, whatever was drafted.
This is the shared-randomness (coupling) view of lossless speculative sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "SamplingParams",
    "process_logits",
    "presence_rows",
    "seen_mask",
    "choose_tokens",
    "PositionDraws",
    "top_p_drop",
]


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen from the target's logits.

    Attributes:
        do_sample: ``False`` = greedy (argmax). ``True`` = draw from the processed softmax.
        temperature: > 0 divides logits before sampling (lower = sharper). ``0`` with
            ``do_sample=True`` means greedy, as in most serving stacks.
        top_k: keep the k highest logits (ties at the k-th value kept); ``0`` = off.
        top_p: nucleus sampling; keep the smallest set of tokens whose probability mass
            exceeds ``top_p`` (fraction, 0 < top_p <= 1); ``1.0`` = off.
        repetition_penalty: CTRL penalty (Keskar et al. 2019, arXiv 1909.05858) applied to
            every token already present in prompt + generated text, in greedy mode too;
            ``1.0`` = off, > 1 discourages repeats.

    Raises:
        ValueError: a field outside its range.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        """True when the choice is the argmax (no sampling, or temperature 0)."""
        return not self.do_sample or self.temperature == 0

    @property
    def uses_history(self) -> bool:
        """True when processing depends on the tokens seen so far (repetition penalty)."""
        return self.repetition_penalty != 1.0


def seen_mask(tokens: list[int], vocab_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (V,) bool mask of tokens already seen, for the repetition penalty.

    >>> seen_mask([2, 0, 2], 4).tolist()
    [True, False, True, False]
    """
    seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    if tokens:
        seen[torch.tensor(tokens, dtype=torch.long, device=device)] = True
    return seen


def presence_rows(base: torch.Tensor, path_tokens: torch.Tensor | None, ancestors: torch.Tensor | None) -> torch.Tensor:
    """Which tokens each scored row has already seen, for the repetition penalty.

    Args:
        base: (V,) bool, tokens present in the committed sequence.
        path_tokens: (N-1,) int64 draft tokens, or None when only the root row is scored.
        ancestors: (N-1, N-1) bool, ``ancestors[i, j]`` = draft node j is node i or one of
            its ancestors (see :mod:`hasten.tree`).

    Returns:
        (N, V) bool. Row 0 is the root (history = committed tokens); row i+1 adds the draft
        tokens on the path from the root to node i, inclusive.

    Example: base = {5}, chain draft [7, 9] -> rows {5}, {5, 7}, {5, 7, 9}.
    """
    if path_tokens is None or path_tokens.numel() == 0:
        return base.unsqueeze(0)
    onehot = torch.zeros(path_tokens.numel(), base.numel(), dtype=torch.float32, device=base.device)
    onehot[torch.arange(path_tokens.numel()), path_tokens] = 1.0
    seen_on_path = (ancestors.to(torch.float32) @ onehot) > 0
    return torch.cat([base.unsqueeze(0), seen_on_path | base.unsqueeze(0)], dim=0)


def process_logits(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Apply repetition penalty and (when sampling) temperature, top-k and top-p.

    Args:
        logits: (N, V) float, raw target (or draft) logits; not modified.
        params: the sampling parameters.
        seen: (N, V) or (1, V) bool, tokens each row has already seen; required when
            ``params.repetition_penalty != 1``.

    Returns:
        (N, V) float32-or-wider processed logits; removed tokens are ``-inf``. In greedy
        mode only the repetition penalty is applied (argmax is invariant to the rest).

    Raises:
        ValueError: repetition penalty requested without ``seen``.
    """
    scores = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if params.uses_history:
        if seen is None:
            raise ValueError("repetition_penalty != 1 needs the seen-token mask")
        penalized = torch.where(scores < 0, scores * params.repetition_penalty, scores / params.repetition_penalty)
        scores = torch.where(seen, penalized, scores)
    if params.greedy:
        return scores
    if params.temperature != 1.0:
        scores = scores / params.temperature
    if params.top_k > 0 and params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        scores = scores.masked_fill(top_p_drop(scores, params.top_p), float("-inf"))
    return scores


NUCLEUS_CANDIDATES = 1024  # top-p looks at this many top tokens first (a full sort is rarely needed)


def _top_p_drop_sorted(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_scores, order = torch.sort(scores, dim=-1)
    mass_below = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = mass_below <= (1 - top_p)
    drop_sorted[..., -1] = False  # always keep the most likely token
    return drop_sorted.scatter(-1, order, drop_sorted)


def top_p_drop(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Tokens outside the nucleus: a token is dropped when the tokens ranked above it
    already hold ``top_p`` of the probability mass (the most likely token is always kept);
    transformers' ``TopPLogitsWarper`` rule.

    Sorting a 49k vocabulary costs ~4 ms per row on a CPU, so each row first ranks only
    its ``NUCLEUS_CANDIDATES`` best tokens (``torch.topk``, masses in float64); a row whose
    candidates hold less than ``top_p`` (a very flat distribution) is sorted in full.
    Which way a row goes depends on that row alone, so a row gets the same mask in a
    one-row plain step as in a many-row verification.

    Args:
        scores: (N, V) float logits after temperature and top-k.
        top_p: nucleus mass, 0 < top_p < 1.

    Returns:
        (N, V) bool, True = dropped.
    """
    vocab = scores.shape[-1]
    if vocab <= 2 * NUCLEUS_CANDIDATES:
        return _top_p_drop_sorted(scores, top_p)
    values, index = torch.topk(scores, NUCLEUS_CANDIDATES, dim=-1)  # descending
    mass = (values.double() - scores.double().logsumexp(dim=-1, keepdim=True)).exp()
    above = mass.cumsum(dim=-1) - mass  # mass of the candidates ranked above each one
    keep = above < top_p
    keep[..., 0] = True
    drop = torch.ones_like(scores, dtype=torch.bool).scatter(-1, index, ~keep)
    flat = (above[..., -1] + mass[..., -1]) < top_p  # the nucleus reaches past the candidates
    if bool(flat.any()):
        rows = flat.nonzero().flatten()
        drop[rows] = _top_p_drop_sorted(scores[rows], top_p)
    return drop


def choose_tokens(
    scores: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    draws: Sequence[float] | None = None,
) -> torch.Tensor:
    """One token per row from processed logits.

    Args:
        scores: (N, V) float processed logits (output of :func:`process_logits`).
        params: greedy takes the argmax; otherwise one draw per row from softmax(scores).
        generator: RNG for the draws when ``draws`` is None (ignored when greedy).
        draws: one uniform in [0, 1) per row (from :class:`PositionDraws`): the row's
            token is the inverse CDF of softmax(scores) at it, computed in float64.

    Returns:
        (N,) int64 token ids.
    """
    if params.greedy:
        return scores.argmax(dim=-1)
    if draws is None:
        return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(-1)
    if len(draws) != scores.shape[0]:
        raise ValueError(f"need one draw per row: {len(draws)} draws for {scores.shape[0]} rows")
    cdf = scores.double().softmax(dim=-1).cumsum(dim=-1)
    u = torch.tensor(draws, dtype=torch.float64, device=scores.device).unsqueeze(-1) * cdf[:, -1:]
    # the first token whose cumulative mass exceeds u; a zero-probability token never does
    return torch.searchsorted(cdf, u, right=True).clamp_(max=scores.shape[-1] - 1).squeeze(-1)


class PositionDraws:
    """Uniform draws keyed by sequence position: ``draws([t, ...])`` gives u_t in [0, 1)
    for each position t, a function of (seed, t) only (NumPy's ``SeedSequence`` entropy
    mixing of the pair), so every row that predicts position t gets the same u_t.

    Args:
        seed: any int (taken modulo 2**64).
    """

    def __init__(self, seed: int):
        self.seed = int(seed) % (1 << 64)
        self._cache: dict[int, float] = {}

    def __call__(self, positions: Sequence[int]) -> list[float]:
        out = []
        for t in positions:
            u = self._cache.get(t)
            if u is None:
                u = self._cache[t] = float(np.random.default_rng([self.seed, int(t)]).random())
            out.append(u)
        return out
