"""Predicted Outputs: the client's expected output as a per-request draft source.

OpenAI's ``prediction: {"type": "content", "content": "..."}`` is tokenized and drafted
from the way prompt lookup drafts from the prompt (Saxena, "Prompt Lookup Decoding",
2023; the n-gram idea of Yang et al., "Inference with Reference: Lossless Acceleration of
Large Language Models", arXiv 2304.04487): the drafter keeps a pointer into the
prediction; while the output follows the prediction it proposes the next prediction
tokens, and when the output departs it re-aligns on the longest suffix of the output
(up to ``max_ngram`` tokens) found at or after the pointer. The drafts are verified like
any other, so the output is the one the request gives without a prediction.

Counts, as OpenAI defines them: ``accepted_prediction_tokens`` = prediction tokens that
appeared in the completion (at the aligned place: accepted as a draft token, or equal to
the target's bonus token while aligned); ``rejected_prediction_tokens`` = the rest of the
prediction (they are billed as completion tokens by OpenAI; here they cost verification).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..drafters.base import Drafter, VerifiedStep
from ..tree import DraftTree

__all__ = ["PredictionConfig", "PredictionDrafter"]


@dataclass(frozen=True)
class PredictionConfig:
    """Attributes:
        prediction: the predicted output's token ids.
        max_ngram: longest output suffix used to re-align (tokens); longer = fewer,
            surer re-alignments.
        max_draft: most prediction tokens drafted per step (the draft budget may cut more).

    Raises:
        ValueError: max_ngram < 1 or max_draft < 1.
    """

    prediction: tuple[int, ...]
    max_ngram: int = 3
    max_draft: int = 32

    def __post_init__(self) -> None:
        if self.max_ngram < 1 or self.max_draft < 1:
            raise ValueError(f"invalid PredictionConfig(max_ngram={self.max_ngram}, max_draft={self.max_draft})")


class PredictionDrafter(Drafter):
    """Drafts the next tokens of the client's prediction (see the module docstring)."""

    name = "prediction"
    observes_plain_steps = True  # the pointer follows the output on plain steps too

    def __init__(self, config: PredictionConfig):
        self.config = config
        self.prediction = list(config.prediction)
        self.pos = 0
        self.matched: set[int] = set()
        self._index: list[int] = []
        self.aligned = True

    def begin(self, request) -> None:
        super().begin(request)
        self.pos, self.matched, self._index, self.aligned = 0, set(), [], True
        self._generated_from = len(request.prompt_ids)

    def _realign(self, tokens: list[int]) -> int | None:
        """Pointer after the longest output suffix found at or after ``self.pos``."""
        out = tokens[self._generated_from :]
        for n in range(min(self.config.max_ngram, len(out)), 0, -1):
            suffix = out[-n:]
            for start in range(self.pos, len(self.prediction) - n + 1):
                if self.prediction[start : start + n] == suffix:
                    return start + n
        return None

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        self._index = []
        if not self.aligned or self.pos >= len(self.prediction):
            return None
        depth = min(max_depth, self.config.max_draft)
        self._index = list(range(self.pos, min(self.pos + depth, len(self.prediction))))
        return DraftTree.chain([self.prediction[i] for i in self._index]) if self._index else None

    def on_accept(self, step: VerifiedStep) -> None:
        for node in step.accepted:  # the draft is a prefix of prediction[pos:]: node k is index pos + k
            self.matched.add(self._index[node])
            self.pos = self._index[node] + 1
        if self.aligned and self.pos < len(self.prediction) and step.next_token == self.prediction[self.pos]:
            self.matched.add(self.pos)
            self.pos += 1
            return
        realigned = self._realign(step.tokens)
        self.aligned = realigned is not None
        if realigned is not None:
            self.matched.add(realigned - 1)  # the bonus token that re-aligned the output
            self.pos = realigned

    @property
    def accepted_prediction_tokens(self) -> int:
        return len(self.matched)

    @property
    def rejected_prediction_tokens(self) -> int:
        return len(self.prediction) - len(self.matched)

    def stats(self) -> dict:
        return {
            "accepted_prediction_tokens": self.accepted_prediction_tokens,
            "rejected_prediction_tokens": self.rejected_prediction_tokens,
        }
