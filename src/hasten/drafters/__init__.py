"""Draft sources for speculative decoding; each module registers one method."""

from .base import (
    METHODS,
    Drafter,
    DraftRequest,
    MethodSpec,
    UnknownMethodError,
    VerifiedStep,
    build_drafter,
    get_method,
    list_methods,
    register,
)

__all__ = [
    "METHODS",
    "Drafter",
    "DraftRequest",
    "MethodSpec",
    "VerifiedStep",
    "UnknownMethodError",
    "build_drafter",
    "get_method",
    "list_methods",
    "register",
]
