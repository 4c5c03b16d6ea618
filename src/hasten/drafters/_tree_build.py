"""Pure helpers that turn candidate continuations into a :class:`~hasten.tree.DraftTree`.

Shared by the draft-free tree drafters (``trie``, ``suffix``, ``jacobi``). A *path* is a
tuple of token ids below the root (the last committed token); a *score* is an estimate of
the probability (fraction 0-1) that the target follows the whole path.

Nodes come out best first (parents always before children), so truncating a tree from the
end (``DraftTree.truncated(max_nodes=...)``, a node budget) drops the least likely nodes.
"""

from __future__ import annotations

from typing import Iterable

from ..tree import DraftTree

__all__ = ["tree_from_scores", "tree_from_sequences", "merge_max"]


def merge_max(into: dict[tuple[int, ...], float], scores: dict[tuple[int, ...], float], weight: float = 1.0) -> None:
    """Fold ``scores`` (times ``weight``) into ``into``, keeping the larger score per path.

    Example: into {(5,): 0.5}, scores {(5,): 0.8, (6,): 0.4}, weight 0.5 ->
    into {(5,): 0.5, (6,): 0.2}.
    """
    for path, score in scores.items():
        score *= weight
        if score > into.get(path, 0.0):
            into[path] = score


def tree_from_scores(scores: dict[tuple[int, ...], float], max_nodes: int, min_score: float = 0.0) -> DraftTree | None:
    """The best-scoring ``max_nodes`` paths as a draft tree, best first.

    A path's score is first capped by its parent's (a continuation is never likelier than
    its prefix); paths whose parent path is missing are dropped. Ties go to the shallower
    path, then to the smaller token tuple, so the result is deterministic.

    Args:
        scores: path -> score (fraction 0-1).
        max_nodes: most nodes in the tree (>= 1).
        min_score: paths scoring below this are left out.

    Returns:
        The tree, or None when no path qualifies; its ``node_scores`` are the capped
        path scores (clipped to [0, 1]), for the draft budget to calibrate.

    Example: {(5,): 0.9, (5, 6): 0.6, (7,): 0.3, (5, 8): 0.2}, max_nodes 3 ->
    tokens (5, 6, 7), parents (-1, 0, -1).
    """
    capped: dict[tuple[int, ...], float] = {}
    for path in sorted(scores, key=len):
        parent = path[:-1]
        if parent and parent not in capped:
            continue
        capped[path] = min(scores[path], capped[parent]) if parent else scores[path]
    ranked = sorted((p for p, s in capped.items() if s >= min_score), key=lambda p: (-capped[p], len(p), p))
    index: dict[tuple[int, ...], int] = {}
    tokens: list[int] = []
    parents: list[int] = []
    node_scores: list[float] = []
    for path in ranked:
        if len(tokens) >= max_nodes:
            break
        parent = path[:-1]
        if parent and parent not in index:
            continue
        index[path] = len(tokens)
        tokens.append(path[-1])
        parents.append(index[parent] if parent else -1)
        node_scores.append(min(1.0, max(0.0, capped[path])))
    return DraftTree(tuple(tokens), tuple(parents), node_scores=tuple(node_scores)) if tokens else None


def tree_from_sequences(sequences: Iterable[Iterable[int]]) -> DraftTree | None:
    """Merge candidate continuations into one tree, sharing common prefixes, in order.

    Args:
        sequences: candidate token sequences, each starting below the root; earlier ones
            get the lower node indices.

    Returns:
        The merged tree, or None when every sequence is empty.

    Example: [[5, 6, 7], [5, 8], [9]] -> tokens (5, 6, 7, 8, 9), parents (-1, 0, 1, 0, -1).
    """
    children: list[dict[int, int]] = [{}]  # per row (0 = root): token -> node
    tokens: list[int] = []
    parents: list[int] = []
    for sequence in sequences:
        row = 0
        for token in sequence:
            token = int(token)
            node = children[row].get(token)
            if node is None:
                node = len(tokens)
                tokens.append(token)
                parents.append(row - 1)
                children[row][token] = node
                children.append({})
            row = node + 1
    return DraftTree(tuple(tokens), tuple(parents)) if tokens else None
