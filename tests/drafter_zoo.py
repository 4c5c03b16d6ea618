"""Test-only drafters that exercise the engine's tree and acceptance paths with known
draft quality. They know nothing of the engine; they are fed the reference output."""

from __future__ import annotations

import random

from hasten.drafters import Drafter
from hasten.tree import DraftTree


class ReferenceTreeDrafter(Drafter):
    """Proposes a tree built around the reference continuation: the correct chain with
    random corruptions, plus sibling branches of random tokens (some with the correct token
    deeper), so greedy must find the right path among several."""

    name = "test_reference_tree"

    def __init__(
        self, reference: list[int], vocab: int, seed: int = 0, width: int = 3, depth: int = 4, corrupt: float = 0.25
    ):
        self.reference, self.vocab = reference, vocab
        self.seed, self.width, self.depth, self.corrupt = seed, width, depth, corrupt

    def begin(self, request) -> None:
        super().begin(request)
        self.rng = random.Random(self.seed)

    def propose(self, tokens, max_depth):
        pos = len(tokens)
        truth = self.reference[pos : pos + min(self.depth, max_depth)]
        if not truth:
            return None
        toks, parents = [], []
        frontier = [-1]
        for true_token in truth:
            next_frontier = []
            for parent in frontier:
                choices = {self.rng.randrange(self.vocab) for _ in range(self.width - 1)}
                if self.rng.random() > self.corrupt:
                    choices.add(true_token)
                for token in sorted(choices)[: self.width]:
                    toks.append(token)
                    parents.append(parent)
                    next_frontier.append(len(toks) - 1)
            frontier = next_frontier[: self.width]
        return DraftTree(tuple(toks), tuple(parents))


class ReferenceChainDrafter(Drafter):
    """The reference continuation with each token replaced by a random one with
    probability ``corrupt``: exercises partial acceptance of chains."""

    name = "test_reference_chain"

    def __init__(self, reference: list[int], vocab: int, seed: int = 0, length: int = 5, corrupt: float = 0.2):
        self.reference, self.vocab, self.seed, self.length, self.corrupt = reference, vocab, seed, length, corrupt

    def begin(self, request) -> None:
        super().begin(request)
        self.rng = random.Random(self.seed)

    def propose(self, tokens, max_depth):
        pos = len(tokens)
        truth = self.reference[pos : pos + min(self.length, max_depth)]
        out = [t if self.rng.random() > self.corrupt else self.rng.randrange(self.vocab) for t in truth]
        return DraftTree.chain(out) if out else None
