"""example_last_token: a one-file drafter (test-only example of adding a draft method).

Drafts the tokens that followed the most recent earlier occurrence of the root token
(the last committed token) in prompt + output: a 1-gram prompt lookup. The engine verifies
the draft, so any proposal keeps the output token-identical to plain decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from hasten.drafters import Drafter
from hasten.drafters.base import MethodSpec, register
from hasten.tree import DraftTree


@dataclass(frozen=True)
class LastTokenConfig:
    """Attributes: max_draft: tokens drafted per step (>= 1)."""

    max_draft: int = 3

    def __post_init__(self) -> None:
        if self.max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {self.max_draft}")


class LastTokenDrafter(Drafter):
    """Proposes what followed the previous occurrence of the root token, as a chain."""

    name = "example_last_token"

    def __init__(self, config: LastTokenConfig) -> None:
        self.max_draft = config.max_draft

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        root = tokens[-1]
        for i in range(len(tokens) - 2, -1, -1):
            if tokens[i] == root:
                follow = tokens[i + 1 : i + 1 + min(self.max_draft, max_depth)]
                return DraftTree.chain(follow) if follow else None
        return None


register(MethodSpec("example_last_token", LastTokenConfig, LastTokenDrafter, "test-only example: 1-gram lookup"))
