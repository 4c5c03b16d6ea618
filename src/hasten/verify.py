"""Acceptance rules: which drafted tokens the target agrees with, and the bonus token.

Pure functions over token lists and probability tensors; no model inside. Every rule
returns ``(accepted_nodes, next_token)``: the draft node indices on the accepted
root-to-node path, in order, and one more token chosen by the target (the *bonus* token
when the whole path was accepted, the *recovered* token after a rejection).

Dims: N draft nodes, K chain length, V vocabulary. Row 0 of a target tensor scores the
root's successor; row i+1 scores node i's successor (see :mod:`hasten.tree`).

Rules implemented:
- greedy: the longest path whose every token equals the target's argmax at its parent.
- sample-and-match (lossless for any draft chosen independently of the target's draws):
  draw the target's token at each visited row and follow the child that matches.
- recursive rejection sampling for trees whose siblings were sampled from a draft
  distribution (arXiv 2402.14160), of which speculative sampling is the chain case.
- speculative sampling (Leviathan et al., "Fast Inference from Transformers via
  Speculative Decoding", arXiv 2211.17192; Chen et al., "Accelerating Large Language
  Model Decoding with Speculative Sampling", arXiv 2302.01318): accept drafted token x
  with probability min(1, target_probs[x] / draft_probs[x]); on rejection draw from the
  normalized positive residual max(0, target_probs - draft_probs).
"""

from __future__ import annotations

import torch

__all__ = ["walk_tree", "greedy_accept", "speculative_sample_accept", "recursive_rejection_walk"]


def walk_tree(children: tuple[dict, ...], row_tokens: list[int]) -> tuple[list[int], int]:
    """Follow the target's chosen token down the tree.

    Args:
        children: per row, ``{token: child node index}`` (``TreeLayout.children``).
        row_tokens: (N+1,) the target's token at every row: its argmax (greedy) or one
            independent draw per row (sample-and-match; only visited rows are used).

    Returns:
        (accepted node indices along the path, next token).

    Example: chain [7, 9], row_tokens [7, 4, 1] -> ([0], 4): 7 accepted, 9 rejected,
    the target's 4 is the recovered token.
    """
    path: list[int] = []
    row = 0
    while True:
        token = row_tokens[row]
        node = children[row].get(token)
        if node is None:
            return path, token
        path.append(node)
        row = node + 1


def greedy_accept(draft_tokens: list[int], target_tokens: list[int]) -> tuple[list[int], int]:
    """Chain form of the greedy rule.

    Args:
        draft_tokens: (K,) drafted chain.
        target_tokens: (K+1,) target argmax at the root and after each drafted token.

    Returns:
        (accepted node indices ``[0 .. a-1]``, next token).

    Example: draft [3, 5, 8], target [3, 5, 2, 6] -> ([0, 1], 2).
    """
    accepted = 0
    while accepted < len(draft_tokens) and draft_tokens[accepted] == target_tokens[accepted]:
        accepted += 1
    return list(range(accepted)), target_tokens[accepted]


def speculative_sample_accept(
    draft_tokens: torch.Tensor, draft_probs: torch.Tensor, target_probs: torch.Tensor, generator: torch.Generator | None
) -> tuple[list[int], int]:
    """Speculative sampling over a chain drafted by sampling from ``draft_probs``.

    Args:
        draft_tokens: (K,) int64 tokens, token i drawn from ``draft_probs[i]``.
        draft_probs: (K, V) float, the draft distributions (rows sum to 1).
        target_probs: (K+1, V) float, processed target distributions at the root and
            after each drafted token.
        generator: RNG for the uniform draws and the residual/bonus draw.

    Returns:
        (accepted node indices ``[0 .. a-1]``, next token). The emitted sequence is
        distributed exactly as sampling from ``target_probs`` one token at a time.

    Example: with draft_probs == target_probs every token is accepted and the next
    token is drawn from ``target_probs[K]``.
    """
    k = draft_tokens.numel()
    rows = torch.arange(k)
    p_target = target_probs[rows, draft_tokens].double()
    p_draft = draft_probs[rows, draft_tokens].double()
    uniform = torch.rand(k, generator=generator, dtype=torch.float64)
    rejected = uniform * p_draft > p_target  # u >= min(1, target/draft), without dividing
    if not bool(rejected.any()):
        nxt = torch.multinomial(target_probs[k].double(), 1, generator=generator)
        return list(range(k)), int(nxt)
    first = int(rejected.nonzero()[0])
    residual = (target_probs[first].double() - draft_probs[first].double()).clamp_min(0)
    if not float(residual.sum()) > 0:
        residual = target_probs[first].double()
    nxt = torch.multinomial(residual / residual.sum(), 1, generator=generator)
    return list(range(first)), int(nxt)


def recursive_rejection_walk(
    children: tuple[dict, ...],
    tokens: tuple[int, ...],
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator | None,
) -> tuple[list[int], int]:
    """Recursive rejection sampling down a tree whose siblings were drawn *without
    replacement* from the draft distribution at their parent (Jeon et al., "Recursive
    Speculative Decoding: Accelerating LLM Inference via Sampling Without Replacement",
    arXiv 2402.14160).

    At a row with target distribution p and draft distribution q, siblings x_1..x_k (in
    draw order) are tried in turn: x_i is accepted with probability min(1, p(x_i)/q(x_i));
    after a rejection p <- normalize(max(0, p - q)) and q <- q without x_i, renormalized.
    An accepted child becomes the next row; if every child is rejected (or there is none)
    the next token is drawn from the current p. The emitted tokens are distributed exactly
    as sampling from the target one token at a time.

    Args:
        children: per row, ``{token: node}`` in draw order (``TreeLayout.children``).
        tokens: (N,) node tokens.
        draft_probs: (N, V) float; row i is the distribution node i was drawn from (the
            same for siblings).
        target_probs: (N+1, V) float processed target distributions per row.
        generator: RNG.

    Returns:
        (accepted node indices along the path, next token).

    Example: a single child drawn from q == p is always accepted.
    """
    path: list[int] = []
    row = 0
    while True:
        p = target_probs[row].double()
        kids = list(children[row].values())
        q = draft_probs[kids[0]].double().clone() if kids else None
        accepted = None
        for node in kids:
            x = tokens[node]
            if float(torch.rand((), generator=generator, dtype=torch.float64)) * float(q[x]) <= float(p[x]):
                accepted = node
                break
            residual = (p - q).clamp_min(0)
            p = residual / residual.sum() if float(residual.sum()) > 0 else p
            q[x] = 0.0
            q = q / q.sum() if float(q.sum()) > 0 else q
        if accepted is None:
            return path, int(torch.multinomial(p, 1, generator=generator))
        path.append(accepted)
        row = accepted + 1
