"""Targets: the model the decode loop verifies drafts with, behind one :class:`Target`
protocol (forward, verify_forward, KV cache operations, cost curve). See
:mod:`hasten.targets.base`."""

from .base import Target, is_backend_model, normalize_eos
from .resolve import model_eos_ids, resolve_target
from .transformers import TransformersTarget

__all__ = [
    "LlamaCppTarget",
    "Target",
    "TransformersTarget",
    "is_backend_model",
    "model_eos_ids",
    "normalize_eos",
    "resolve_target",
]


def __getattr__(name: str):
    if name == "LlamaCppTarget":  # lazy: keeps the llama.cpp module out of a plain import
        from .llamacpp import LlamaCppTarget

        return LlamaCppTarget
    raise AttributeError(name)
