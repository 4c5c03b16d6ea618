"""Which :class:`~hasten.targets.base.Target` serves a model: the backend's own or the
transformers implementation (kept apart from the protocol so ``base`` imports no implementation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Target
from .transformers import TransformersTarget

__all__ = ["resolve_target", "model_eos_ids"]


def resolve_target(model: Any) -> Target:
    """The decode loop's target for ``model``: the backend's own (``model.engine_target()``,
    e.g. :class:`hasten.backends.llamacpp.LlamaCppModel`) or a
    :class:`~hasten.targets.TransformersTarget` for a transformers model / CompiledModel."""
    make = getattr(model, "engine_target", None)
    if make is not None:
        return make()
    return TransformersTarget(model)


def model_eos_ids(model: Any, eos_token_id: int | Iterable[int] | None = None) -> set[int]:
    """The stop token ids for ``model``: ``eos_token_id`` normalised, or the model's own
    (its target's ``eos_ids``: a transformers model's generation config, a GGUF's eos ids)."""
    return resolve_target(model).eos_ids(eos_token_id)
