"""Token recycling: draft trees grown from the target's own past top-k candidates.

Implements Token Recycling (Luo et al., "Turning Trash into Treasure: Accelerating
Inference of Large Language Models with Token Recycling", arXiv 2408.08696). Every
verification scores every tree row; the target's top-k tokens at a row are candidates
for what follows that row's token, and are normally thrown away. Here they are kept in an
*adjacency map* (token -> its latest top-k followers, most likely first; the paper's
adjacency matrix), and each step grows a draft tree from the root by following the map
along a *static tree shape*: the node at rank path (r1, ..., rd) is the r_d-th follower of
its parent's token. The shape keeps the paths with the highest prior product of per-rank
acceptance rates, so breadth shrinks with depth and with rank.

No model, no corpus. The map starts from the prompt's bigrams (then target candidates
replace them) and resets in ``begin()`` unless a shared :class:`AdjacencyMap` is given
(the paper's hot start across requests; it changes drafts, never the output). When the
root has no known followers, the drafter can probe the most frequent committed tokens
(``probe``), so the step still teaches the map something; off by default, since on a CPU
the probe costs more than it teaches.

Glossary: *follower* = a candidate next token; *rank* = its position in a map row (0 =
the target's top-1); *shape* = (parent index, rank) per node, best first.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from ..tree import DraftTree
from .base import Drafter, MethodSpec, register

__all__ = ["RecyclingConfig", "RecyclingDrafter", "AdjacencyMap", "static_tree", "grow_tree"]


class AdjacencyMap:
    """token -> up to ``top_k`` follower tokens, most likely first (the adjacency matrix,
    stored sparsely: only tokens seen as a row input have a row).

    Example: top_k 2; seed([4, 5, 4, 6]) -> row 4 = [6, 5] (latest bigram first), row 5 = [4];
    update([4], [[7, 8]]) -> row 4 = [7, 8].
    """

    def __init__(self, top_k: int = 8):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        self.rows: dict[int, list[int]] = {}

    def get(self, token: int) -> list[int]:
        return self.rows.get(token, [])

    def update(self, inputs: list[int], followers: list[list[int]]) -> None:
        """Replace the row of each input token with the target's candidates there (later
        inputs win when a token repeats)."""
        for token, row in zip(inputs, followers):
            self.rows[token] = row[: self.top_k]

    def seed(self, tokens: list[int]) -> None:
        """Add the bigrams of ``tokens`` to rows that have room, most recent first."""
        for i in range(len(tokens) - 2, -1, -1):
            row = self.rows.setdefault(tokens[i], [])
            if len(row) < self.top_k and tokens[i + 1] not in row:
                row.append(tokens[i + 1])

    def __len__(self) -> int:
        return len(self.rows)


@lru_cache(maxsize=32)
def static_tree(widths: tuple[int, ...], rank_prior: tuple[float, ...], max_nodes: int) -> tuple[tuple[int, int], ...]:
    """The draft tree shape: the ``max_nodes`` rank paths with the highest prior.

    A rank path (r1, ..., rd) needs r_j < widths[j-1]; its prior is the product of
    ``rank_prior[r_j]``. Nodes come best first (a child's prior is below its parent's).

    Returns:
        (parent node index or -1, rank) per node.

    Example: widths (2, 1), rank_prior (0.6, 0.2), max_nodes 3 -> ((-1, 0), (0, 0), (-1, 1)):
    paths (0,) 0.6, (0, 0) 0.36, (1,) 0.2.
    """
    heap = [(-rank_prior[r], (r,), -1) for r in range(widths[0])]
    heapq.heapify(heap)
    shape: list[tuple[int, int]] = []
    while heap and len(shape) < max_nodes:
        neg_prior, path, parent = heapq.heappop(heap)
        shape.append((parent, path[-1]))
        if len(path) < len(widths):
            for r in range(widths[len(path)]):
                heapq.heappush(heap, (neg_prior * rank_prior[r], path + (r,), len(shape) - 1))
    return tuple(shape)


def grow_tree(root: int, adjacency: AdjacencyMap, shape: tuple[tuple[int, int], ...]) -> DraftTree | None:
    """Fill ``shape`` from the map: node (parent, rank) gets the rank-th follower of its
    parent's token; a node whose parent is missing or whose rank is beyond the row is
    skipped with its subtree.

    Example: root 1, rows {1: [2, 3], 2: [4]}, shape ((-1, 0), (0, 0), (-1, 1), (1, 0)) ->
    tokens (2, 4, 3), parents (-1, 0, -1) (4 has no row, so (1, 0) is skipped).
    """
    placed: list[int | None] = []  # shape index -> draft node index
    tokens: list[int] = []
    parents: list[int] = []
    for parent, rank in shape:
        anchor = -1 if parent == -1 else placed[parent]
        row = adjacency.get(root if parent == -1 else tokens[anchor]) if anchor is not None else []
        if rank >= len(row):
            placed.append(None)
            continue
        placed.append(len(tokens))
        tokens.append(row[rank])
        parents.append(anchor)
    return DraftTree(tuple(tokens), tuple(parents)) if tokens else None


class FrequentTokens:
    """The ``count`` most frequent tokens of a stream, updated per token in O(count).

    Example: count 2, add [5, 6, 6, 7, 7, 7] -> top = [7, 6].
    """

    def __init__(self, count: int):
        self.count = count
        self.freq: dict[int, int] = {}
        self.top: list[int] = []

    def add(self, tokens) -> None:
        for token in tokens:
            self.freq[token] = self.freq.get(token, 0) + 1
            if token not in self.top:
                self.top.append(token)
            self.top.sort(key=lambda t: -self.freq[t])
            del self.top[self.count :]


def _as_tuple(value, kind) -> tuple:
    """``"4,3,2"`` or ``[4, 3, 2]`` -> ``(4, 3, 2)`` (elements converted with ``kind``).

    Raises:
        ValueError: an element that ``kind`` cannot convert.
    """
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return tuple(kind(v) for v in value)


@dataclass(frozen=True)
class RecyclingConfig:
    """Token recycling settings.

    Attributes:
        top_k: followers kept per token (map row width); rows wider than the shape's
            widths only matter for later shapes.
        widths: per depth, how many ranks a node may branch into; its length is the
            deepest draft node. Wider/deeper catches more but verifies more nodes.
        rank_prior: assumed acceptance rate of each rank (fractions 0-1, one per rank up
            to ``max(widths)``); orders the static shape.
        max_nodes: node budget per step (the shape's size). The default 6 suits a CPU
            (the paper's GPU tree has about 80): the top-1 chain to depth 4 plus the
            second-ranked follower at depths 1 and 2.
        seed_from_prompt: start the map from the prompt's bigrams.
        probe: when the root has no row, draft this many (at most ``max_nodes``) of the
            most frequent committed tokens as single nodes (0 = take a plain step instead).
        adjacency: a shared :class:`AdjacencyMap` (hot start); it keeps learning across
            requests. None = a fresh map per request.

    Raises:
        ValueError: empty or non-positive widths, a width above ``top_k`` or beyond
            ``rank_prior``, a prior outside (0, 1], ``max_nodes < 1`` or ``probe < 0``.
    """

    top_k: int = 8
    widths: tuple[int, ...] = (4, 3, 2, 2, 1, 1)
    rank_prior: tuple[float, ...] = (0.6, 0.15, 0.07, 0.04)
    max_nodes: int = 6
    seed_from_prompt: bool = True
    probe: int = 0
    adjacency: AdjacencyMap | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # the CLI passes "4,3,2"; JSON passes lists: store tuples
        object.__setattr__(self, "widths", _as_tuple(self.widths, int))
        object.__setattr__(self, "rank_prior", _as_tuple(self.rank_prior, float))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be non-empty and positive, got {self.widths}")
        if max(self.widths) > min(self.top_k, len(self.rank_prior)):
            raise ValueError(
                f"widths {self.widths} exceed top_k ({self.top_k}) or rank_prior's length ({len(self.rank_prior)})"
            )
        if not all(0 < p <= 1 for p in self.rank_prior):
            raise ValueError(f"rank_prior values must be in (0, 1], got {self.rank_prior}")
        if self.max_nodes < 1 or self.probe < 0:
            raise ValueError(f"need max_nodes >= 1 and probe >= 0, got {self.max_nodes}, {self.probe}")
        if self.adjacency is not None and self.adjacency.top_k < max(self.widths):
            raise ValueError(f"the shared map keeps {self.adjacency.top_k} followers; widths need {max(self.widths)}")


class RecyclingDrafter(Drafter):
    """Grows draft trees from recycled target candidates (see module docstring); learns
    from plain steps too (the root row's top-k)."""

    name = "recycling"
    observes_plain_steps = True

    def __init__(self, config: RecyclingConfig = RecyclingConfig()):
        self.config = config
        self.shape = static_tree(tuple(config.widths), tuple(config.rank_prior), config.max_nodes)

    def begin(self, request) -> None:
        super().begin(request)
        config = self.config
        self.adjacency = config.adjacency if config.adjacency is not None else AdjacencyMap(config.top_k)
        if config.seed_from_prompt:
            self.adjacency.seed(list(request.prompt_ids))
        self.frequent = FrequentTokens(min(config.probe, config.max_nodes))
        self.frequent.add(request.prompt_ids)
        self.fed = len(request.prompt_ids)
        self.committed = 0
        self.probes = 0

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        self.frequent.add(tokens[self.fed :])
        self.fed = len(tokens)
        self.committed = len(tokens)
        tree = grow_tree(tokens[-1], self.adjacency, self.shape)
        if tree is None and self.frequent.top:
            self.probes += 1
            tree = DraftTree(tuple(self.frequent.top), (-1,) * len(self.frequent.top))
        return tree

    def on_accept(self, step) -> None:
        """Recycle the target's top-k at every verified row: ``step.scores`` (N+1, V)
        processed logits, row 0 after the root, row i+1 after node i; tokens the
        processing ruled out (-inf) are not kept."""
        # the root as the engine reports it: on a final step the engine proposes nothing,
        # so what propose saw last is a step behind
        root = step.tokens[step.root_position if step.root_position is not None else self.committed - 1]
        inputs = [root, *step.draft.tokens]
        values, indices = step.scores.topk(min(self.config.top_k, step.scores.shape[-1]), dim=-1)
        keep = torch.isfinite(values)
        followers = [row[mask].tolist() for row, mask in zip(indices, keep)]
        self.adjacency.update(inputs, followers)

    def stats(self) -> dict:
        return {"map_rows": len(self.adjacency), "probes": self.probes}


register(
    MethodSpec(
        "recycling",
        RecyclingConfig,
        RecyclingDrafter,
        "draft trees from the target's recycled top-k candidates (Token Recycling, arXiv 2408.08696)",
    )
)
