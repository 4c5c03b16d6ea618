"""Draft sources for speculative decoding; each module registers one method."""

from .base import (Drafter, DraftRequest, MethodSpec, VerifiedStep, UnknownMethodError, build_drafter,
                   get_method, list_methods, register)

__all__ = ["Drafter", "DraftRequest", "MethodSpec", "VerifiedStep", "UnknownMethodError", "build_drafter",
           "get_method", "list_methods", "register"]
