"""The target seam: what the decode loop (:mod:`hasten.engine`) needs from the model it
verifies drafts with. A backend plugs in by implementing :class:`Target` and giving its
model an ``engine_target()`` method; :func:`resolve_target` picks the target for a model.

Implementations: :class:`hasten.targets.TransformersTarget` (transformers models and
:class:`hasten.compile.CompiledModel`), :class:`hasten.targets.LlamaCppTarget` (GGUF files
run by llama.cpp).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import torch

from ..tree import DraftTree

__all__ = ["Target", "is_backend_model", "normalize_eos"]


@runtime_checkable
class Target(Protocol):
    """The target model as the decode loop sees it.

    Attributes:
        backend: a short name (``"transformers"``, ``"llama.cpp"``) for stats and errors.
        model: the underlying model object.
        device: where logits live.
        context_length: most positions the model takes (None = unknown).
        vocab_size: V, the logits' width.
        forwards / forward_seconds: counters of target forwards and their wall time (s).
    """

    backend: str
    model: Any
    device: torch.device
    context_length: int | None
    vocab_size: int
    forwards: int
    forward_seconds: float

    def forward(self, cache: Any, tokens: list[int], *, last_only: bool = False, **kwargs: Any) -> torch.Tensor:
        """Logits (rows, V) float for ``tokens`` appended to ``cache`` (rows = 1 if ``last_only``)."""

    def verify_forward(self, cache: Any, root: int, draft: DraftTree) -> torch.Tensor:
        """Logits (N+1, V) for the root token and every draft node (tree attention), appended to ``cache``."""

    def new_cache(self, static: bool = False) -> Any:
        """An empty KV cache (``static``: preallocated buffers where the backend has them)."""

    def cache_length(self, cache: Any) -> int:
        """Tokens held by ``cache``."""

    def rollback(self, cache: Any, length: int) -> None:
        """Truncate ``cache`` to its first ``length`` tokens (rejected draft rows go)."""

    def keep_rows(self, cache: Any, start: int, rows: list[int]) -> None:
        """Keep, of the rows from ``start`` on, only ``rows`` (the accepted tree path), compacted."""

    def cost_curve(self) -> Any:
        """The measured verification cost curve (seconds per forward by node count), for the draft budget."""

    def max_nodes(self, cache: Any) -> int | None:
        """Most draft nodes the next verification may have (None = no limit)."""

    def eos_ids(self, eos_token_id: int | Iterable[int] | None) -> set[int]:
        """The stop token ids: ``eos_token_id`` normalised, or the model's own when None."""


def normalize_eos(eos_token_id: int | Iterable[int] | None, default: int | Iterable[int] | None = None) -> set[int]:
    """One set of stop token ids from an int, an iterable of ints, or None (then ``default``).

    >>> normalize_eos(2), normalize_eos([2, 3]), normalize_eos(None, default=7), normalize_eos(None)
    ({2}, {2, 3}, {7}, set())
    """
    if eos_token_id is None:
        eos_token_id = default
    if eos_token_id is None:
        return set()
    if isinstance(eos_token_id, int):
        return {eos_token_id}
    return {int(t) for t in eos_token_id}


def is_backend_model(model: Any) -> bool:
    """Whether ``model`` brings its own target (a backend model such as llama.cpp), not a torch module."""
    return callable(getattr(model, "engine_target", None))
