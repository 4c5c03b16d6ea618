"""Pure unmasking rules of diffusion-LM decoding: functions on tensors, no model inside.

Shapes: B batch rows, N positions of the current block. ``conf`` is the probability the model
gives its own top token at a position (0-1, float); ``candidates`` marks the positions still
masked (bool). Every rule returns a ``(B, N)`` bool *commit* mask, a subset of ``candidates``,
with at least one position per row that has any candidate (decoding always progresses).

Glossary: *canvas* - prompt followed by the generation region, masked positions hold [MASK];
*block* - a span of the generation region decoded before the next (semi-autoregressive);
*commit* - replace [MASK] by the model's top token, final for the rest of the run;
*low-confidence remasking* - LLaDA's rule: commit the k most confident positions, keep the rest
masked (arXiv 2502.09992).

Example::

    >>> conf = torch.tensor([[0.95, 0.5, 0.92, 0.1]])
    >>> cand = torch.tensor([[True, True, True, True]])
    >>> low_confidence_topk(conf, cand, torch.tensor([1])).tolist()
    [[True, False, False, False]]
    >>> threshold_rule(conf, cand, 0.9).tolist()
    [[True, False, True, False]]
    >>> factor_rule(conf, cand, 1.0).tolist()  # (n+1)(1-c_n): 2*0.05=0.1, 3*0.08=0.24, 4*0.5=2.0
    [[True, False, True, False]]
    >>> local_leap_rule(conf, cand, anchor=0.94, relaxed=0.4, radius=1).tolist()
    [[True, True, False, False]]
"""

from __future__ import annotations

import torch

__all__ = [
    "top_tokens",
    "num_transfer_tokens",
    "low_confidence_topk",
    "threshold_rule",
    "factor_rule",
    "local_leap_rule",
    "top2_gap",
    "fill_after_eos",
]


def top_tokens(logits: torch.Tensor, mask_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy token and its probability: ``logits (B, N, V)`` -> ``tokens (B, N) int64, conf (B, N) float``.

    ``mask_id``: the [MASK] id, never proposed (a committed [MASK] would stay masked forever);
    its probability mass is removed before the softmax, as LLaDA's samplers never emit it.
    """
    if mask_id is not None and mask_id < logits.shape[-1]:  # a sentinel past the vocabulary needs nothing
        logits = logits.clone()
        logits[..., mask_id] = -torch.inf
    probs = torch.softmax(logits, dim=-1)
    conf, tokens = probs.max(dim=-1)
    return tokens, conf


def num_transfer_tokens(masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's schedule: spread each row's masked count over ``steps`` steps, remainder first.

    ``masked: (B, N) bool`` -> ``(B, steps) int64``. Example: 10 masked over 4 steps -> [3, 3, 2, 2].

    >>> num_transfer_tokens(torch.ones(1, 10, dtype=torch.bool), 4).tolist()
    [[3, 3, 2, 2]]
    """
    count = masked.sum(dim=1, keepdim=True)
    base, rem = count // steps, count % steps
    return base + (torch.arange(steps, device=masked.device)[None, :] < rem).long()


def _fallback(commit: torch.Tensor, conf: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Add each row's most confident candidate where a row has candidates but commits none."""
    scored = conf.masked_fill(~candidates, -torch.inf)
    best = torch.zeros_like(commit).scatter_(1, scored.argmax(dim=1, keepdim=True), True)
    empty = ~commit.any(dim=1, keepdim=True) & candidates.any(dim=1, keepdim=True)
    return commit | (best & empty)


def low_confidence_topk(conf: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Commit the ``k[b]`` most confident candidates of row b (LLaDA low-confidence remasking).

    Ties go to the lower position (``torch.topk`` on a stable order is not guaranteed, so the
    scores are made unique by a tiny position term only when equal; here we sort stably).
    """
    scored = conf.masked_fill(~candidates, -torch.inf)
    order = torch.sort(scored, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=conf.device).expand_as(order))
    return (rank < k[:, None]) & candidates


def threshold_rule(conf: torch.Tensor, candidates: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fast-dLLM's threshold rule (arXiv 2505.22618): commit candidates with ``conf > threshold``,
    else the single most confident one. ``threshold`` 1.0 commits exactly one per step."""
    return _fallback(candidates & (conf > threshold), conf, candidates)


def factor_rule(conf: torch.Tensor, candidates: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM's factor rule: with candidate confidences sorted c_1 >= c_2 >= ..., commit the
    largest n with ``(n + 1) * (1 - c_n) < factor`` (at least one). Larger ``factor``: more per step."""
    scored = conf.masked_fill(~candidates, -torch.inf)
    sorted_conf, order = torch.sort(scored, dim=1, descending=True, stable=True)
    n = torch.arange(1, conf.shape[1] + 1, device=conf.device, dtype=conf.dtype)
    ok = ((n + 1) * (1 - sorted_conf) < factor) & torch.isfinite(sorted_conf)
    count = (ok.long().cumprod(dim=1)).sum(dim=1)  # longest prefix satisfying the bound
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=conf.device).expand_as(order))
    return _fallback((rank < count[:, None]) & candidates, conf, candidates)


def local_leap_rule(
    conf: torch.Tensor, candidates: torch.Tensor, anchor: float, relaxed: float, radius: int
) -> torch.Tensor:
    """Local determinism propagation (LocalLeap, arXiv 2510.07081): *anchors* are candidates with
    ``conf > anchor``; candidates within ``radius`` positions of an anchor commit at the relaxed
    bound ``conf > relaxed``. No anchor: the most confident candidate. ``radius`` 0 is exactly
    :func:`threshold_rule` at ``anchor``."""
    anchors = candidates & (conf > anchor)
    near = anchors.clone()
    for shift in range(1, radius + 1):
        near[:, shift:] |= anchors[:, :-shift]
        near[:, :-shift] |= anchors[:, shift:]
    return _fallback(anchors | (near & candidates & (conf > relaxed)), conf, candidates)


def top2_gap(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 logit at each position: ``(B, N, V)`` -> ``(B, N)`` (Prophet's confidence gap)."""
    top = logits.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def fill_after_eos(canvas: torch.Tensor, masked: torch.Tensor, eos_id: int, start: int) -> torch.Tensor:
    """End-of-text prediction (EoTP, Learn2PD arXiv 2509.25188): in each row, every masked position
    after the first committed ``eos_id`` at or past ``start`` becomes ``eos_id``. Returns a new canvas.

    >>> c = torch.tensor([[5, 9, 2, 9, 9]]); fill_after_eos(c, c == 9, 2, 1).tolist()
    [[5, 9, 2, 2, 2]]
    """
    is_eos = (canvas == eos_id) & ~masked
    is_eos[:, :start] = False
    after = is_eos.long().cumsum(dim=1) > 0
    return torch.where(after & masked, torch.full_like(canvas, eos_id), canvas)
