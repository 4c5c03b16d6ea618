"""Generation results: :class:`GenerationStats` (counters and timings of one
:func:`hasten.generate` call) and :class:`GenerationResult` (its output); re-exported by
:mod:`hasten.engine` and :mod:`hasten`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["GenerationResult", "GenerationStats"]


@dataclass
class GenerationStats:
    """Counters and timings of one :func:`generate` call.

    Attributes:
        method: method name ("ar" for plain decoding).
        prompt_tokens / new_tokens: token counts.
        forward_passes: target forwards, prefill included.
        forward_seconds: wall seconds inside those forwards (a drafter's own model calls
            are not included: they are drafting cost).
        drafted / accepted / committed: per verification step, draft nodes verified,
            draft tokens accepted and kept (the bonus token excluded), and tokens kept
            (accepted + bonus, cut at eos / a stop string / the token budget: tokens the
            target accepted after eos are not counted).
        prefill_seconds: the prompt forward (seconds; plain decoding includes the first
            token, speculative paths prefill all but the last prompt token).
        decode_seconds: the rest (seconds).
        finish_reason: "eos", "stop_string", "max_new_tokens" or "context_length".
        drafter: drafter-specific figures.
    """

    method: str
    prompt_tokens: int
    new_tokens: int = 0
    forward_passes: int = 0
    forward_seconds: float = 0.0
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    finish_reason: str = ""
    drafter: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Verification steps after prefill."""
        return len(self.accepted)

    @property
    def mean_accepted_tokens(self) -> float:
        """tau: tokens committed per verification step (accepted + bonus); 1.0 for plain decoding."""
        return sum(self.committed) / self.steps if self.steps else 1.0

    @property
    def total_seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def tokens_per_second(self) -> float:
        """New tokens per wall-clock second, prefill included."""
        return self.new_tokens / self.total_seconds if self.total_seconds > 0 else 0.0

    @property
    def forward_passes_per_token(self) -> float:
        return self.forward_passes / self.new_tokens if self.new_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            steps=self.steps,
            mean_accepted_tokens=self.mean_accepted_tokens,
            tokens_per_second=self.tokens_per_second,
            forward_passes_per_token=self.forward_passes_per_token,
        )
        return out

    def summary_line(self) -> str:
        return (
            f"{self.new_tokens} tokens in {self.total_seconds:.2f}s: {self.tokens_per_second:.1f} tok/s, "
            f"mean accepted tokens {self.mean_accepted_tokens:.2f}, "
            f"{self.forward_passes_per_token:.2f} forward passes/token ({self.method}, {self.finish_reason})"
        )


@dataclass
class GenerationResult:
    """Output of :func:`generate`.

    Attributes:
        sequences: (1, prompt_len + new_len) int64, prompt followed by the new tokens, as
            ``model.generate`` returns them.
        stats: :class:`GenerationStats`.
        text: the new tokens decoded (special tokens skipped) when a tokenizer was given.
    """

    sequences: torch.Tensor
    stats: GenerationStats
    text: str | None = None
