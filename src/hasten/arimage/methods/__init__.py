"""AR image methods, one file each, registered in :data:`METHODS` by name.

Each file holds a frozen config dataclass (validated in ``__post_init__``), one class with
``sample(model, label, settings, generator) -> (tokens, ImageStats)`` and one
``METHODS.register`` line with a :class:`MethodSpec`. Built in: ``reference`` (plain AR
sampling, both token kinds), ``sjd``, ``gsd``, ``lantern`` (discrete tokens),
``continuous_sd`` and ``disa`` (continuous tokens with a diffusion head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from ...registry import Registry

__all__ = ["METHODS", "MethodSpec", "ImageStats", "ImageMethod"]


@dataclass
class ImageStats:
    """Counters for one image.

    Attributes:
        tokens: image tokens generated (L). forwards: transformer forward calls (each over
        all CFG rows). head_calls: diffusion-head calls (continuous models; each over all
        rows it was given). drafted: draft tokens verified. accepted: drafts accepted.
        draft_forwards / draft_head_calls: calls of a separate draft model (continuous_sd).
        accepted_per_forward: tokens committed by each verification forward, in order.
    """

    tokens: int = 0
    forwards: int = 0
    head_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    draft_forwards: int = 0
    draft_head_calls: int = 0
    accepted_per_forward: list[int] = field(default_factory=list)


class ImageMethod(Protocol):
    def sample(
        self, model: Any, label: int, settings: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        """One image for class ``label``: (L,) int64 tokens (discrete) or (L, D) float
        tokens (continuous), and its counters."""


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes:
        name: the method name (``generate(method=...)``, bench records).
        config_type: its frozen config dataclass (``config_type()`` = the defaults).
        build: config -> :class:`ImageMethod`.
        kinds: token kinds it runs on (``"discrete"``, ``"continuous"``).
        lossless: True when its output distribution equals the reference sampler's.
        paper: title and arXiv id.
    """

    name: str
    config_type: type
    build: Callable[[Any], ImageMethod]
    kinds: tuple[str, ...]
    lossless: bool
    paper: str


METHODS: Registry[MethodSpec] = Registry("arimage method", builtin_modules=("hasten.arimage.methods.*",))
