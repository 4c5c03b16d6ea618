"""dLLM decoding methods, one file each, registered in :data:`METHODS` by name.

Each file holds a frozen config dataclass (validated in ``__post_init__``), one class with
``run(adapter, canvas, prompt_len, block_length, stats, trace) -> canvas``, and one
``METHODS.register`` line. ``hasten.dllm.generate(..., method=NAME, method_options={...})``
builds ``spec.config(**method_options)`` and ``spec.build(config)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...registry import Registry

__all__ = ["METHODS", "MethodSpec"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: ``config`` (dataclass type), ``build(config) -> method``, one-line
    ``summary``, and the ``paper`` it implements (title + arXiv id)."""

    config: type
    build: Callable[[Any], Any]
    summary: str
    paper: str


METHODS: Registry[MethodSpec] = Registry("dLLM method", ("hasten.dllm.methods.*",))
