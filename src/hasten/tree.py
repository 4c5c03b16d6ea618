"""Draft trees: candidate continuations verified together in one target forward pass.

A draft is a tree of N candidate tokens hanging below the *root*, the last committed
token (which is not yet in the KV cache). A chain of K tokens is the tree whose node i
has parent i-1. Verification feeds ``[root, node_0 .. node_{N-1}]`` (N+1 rows) to the
target; row 0 scores the root's successor, row i+1 scores node i's successor.

Dims: N draft nodes, V vocabulary. Row indices include the root (row 0).

The layout functions are pure and cached per tree shape (the ``parents`` tuple), so a
drafter that reuses a shape pays for building the mask once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch

__all__ = ["DraftTree", "TreeLayout", "tree_layout"]


@dataclass(frozen=True)
class DraftTree:
    """Candidate tokens below the root.

    Attributes:
        tokens: (N,) token ids of the draft nodes.
        parents: (N,) parent node index of each node, ``-1`` for a child of the root.
            Parents come before children (``parents[i] < i``).
        draft_probs: optional (N, V) float tensor: row i is the distribution node i's token
            was *sampled* from at its parent (a draft model's processed probabilities).
            Siblings share that distribution and must be drawn from it without
            replacement, in node order. Enables speculative sampling (chains) and
            recursive rejection sampling (trees).
        node_scores: optional (N,) the drafter's confidence (fraction 0-1) that the target
            follows the whole path from the root to node i, e.g. a retrieval frequency.
            Uncalibrated; :class:`hasten.budget.DraftBudget` calibrates it against the
            acceptances it observes and verifies only the nodes that pay for themselves.

    Raises:
        ValueError: lengths differ, a parent index is out of order, probs have the
            wrong number of rows, or a node score is outside [0, 1].
    """

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    draft_probs: torch.Tensor | None = field(default=None, compare=False)
    node_scores: tuple[float, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.parents):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.parents)} parents")
        for i, parent in enumerate(self.parents):
            if not -1 <= parent < i:
                raise ValueError(f"node {i} has parent {parent}; parents must precede children")
        if self.draft_probs is not None:
            if self.draft_probs.shape[0] != len(self.tokens):
                raise ValueError("draft_probs needs one row per drafted token")
        if self.node_scores is not None:
            if len(self.node_scores) != len(self.tokens):
                raise ValueError(f"{len(self.node_scores)} node scores for {len(self.tokens)} nodes")
            if not all(0.0 <= s <= 1.0 for s in self.node_scores):
                raise ValueError(f"node scores must lie in [0, 1], got {self.node_scores}")

    @classmethod
    def chain(cls, tokens, draft_probs: torch.Tensor | None = None) -> "DraftTree":
        """A linear draft: ``chain([7, 9])`` is 7 below the root and 9 below 7."""
        tokens = tuple(int(t) for t in tokens)
        return cls(tokens, tuple(range(-1, len(tokens) - 1)), draft_probs)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_chain(self) -> bool:
        return all(p == i - 1 for i, p in enumerate(self.parents))

    def truncated(self, max_depth: int, max_nodes: int | None = None) -> "DraftTree":
        """The same tree without nodes deeper than ``max_depth`` (root depth 0) or past
        ``max_nodes`` (nodes are dropped from the end, so parents stay before children)."""
        depths = tree_layout(self.parents).depths
        keep = [i for i in range(len(self.tokens)) if depths[i + 1] <= max_depth]
        if max_nodes is not None:
            keep = keep[:max_nodes]
        return self.subset(keep)

    def subset(self, keep: list[int]) -> "DraftTree":
        """The tree of the nodes ``keep`` (increasing indices, closed under parents),
        renumbered in the same order; probs and scores follow their nodes.

        Raises:
            ValueError: a kept node whose parent is not kept.
        """
        if len(keep) == len(self.tokens):
            return self
        remap = {old: new for new, old in enumerate(keep)}
        try:
            parents = tuple(-1 if self.parents[i] == -1 else remap[self.parents[i]] for i in keep)
        except KeyError:
            raise ValueError(f"nodes {keep} are not closed under parents {self.parents}") from None
        probs = None if self.draft_probs is None else self.draft_probs[keep]
        scores = None if self.node_scores is None else tuple(self.node_scores[i] for i in keep)
        return DraftTree(tuple(self.tokens[i] for i in keep), parents, probs, scores)


@dataclass(frozen=True)
class TreeLayout:
    """Everything verification needs about a tree's shape.

    Attributes:
        depths: (N+1,) depth of each row; the root is 0.
        visible: (N+1, N+1) bool; ``visible[i, j]`` = row j is row i or an ancestor of it
            (the attention pattern among the tree rows).
        node_ancestors: (N, N) bool; the same relation among draft nodes only.
        children: per row, ``{token: child node index}``; used to walk accepted paths.
    """

    depths: tuple[int, ...]
    visible: torch.Tensor
    node_ancestors: torch.Tensor
    children: tuple[dict, ...]


@lru_cache(maxsize=256)
def _shape_layout(parents: tuple[int, ...]) -> tuple[tuple[int, ...], torch.Tensor]:
    n_rows = len(parents) + 1
    visible = torch.zeros(n_rows, n_rows, dtype=torch.bool)
    depths = [0] * n_rows
    visible[0, 0] = True
    for node, parent in enumerate(parents):
        row, parent_row = node + 1, parent + 1
        visible[row] = visible[parent_row]
        visible[row, row] = True
        depths[row] = depths[parent_row] + 1
    return tuple(depths), visible


def tree_layout(parents: tuple[int, ...], tokens: tuple[int, ...] | None = None) -> TreeLayout:
    """Mask, depths and child lookup for a tree given as a parent list.

    Args:
        parents: (N,) parent node index per node, -1 for children of the root.
        tokens: (N,) node tokens; needed only for ``children``.

    Returns:
        A :class:`TreeLayout`.

    Example: parents (-1, -1, 0) -> depths (0, 1, 1, 2); row 3 (node 2) sees rows 0, 1, 3.
    """
    depths, visible = _shape_layout(tuple(parents))
    children: list[dict] = [dict() for _ in range(len(parents) + 1)]
    if tokens is not None:
        for node, (parent, token) in enumerate(zip(parents, tokens)):
            children[parent + 1].setdefault(int(token), node)
    return TreeLayout(depths, visible, visible[1:, 1:], tuple(children))
