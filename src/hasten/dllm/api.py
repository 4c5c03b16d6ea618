"""``hasten.dllm.generate``: one entry point for every diffusion-LM decoding method.

Shapes: B batch, P prompt tokens, G generation length, L = P + G.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .adapters import DLLMAdapter, as_adapter, check_adapter
from .engine import DecodeStats
from .methods import METHODS
from .models import MODELS

__all__ = ["DLLMOutput", "generate", "load", "build_method"]


@dataclass
class DLLMOutput:
    """``sequences (B, P + G) int64``: prompt + generation in the caller's token ids;
    ``stats``: :class:`DecodeStats`; ``trace``: canvases after each step (model ids), if asked."""

    sequences: torch.Tensor
    stats: DecodeStats
    trace: list[torch.Tensor] = field(default_factory=list)


def load(name: str, **options: Any):
    """A shipped diffusion LM by name: returns (adapter, tokenizer). Names: ``MODELS.names()``."""
    return MODELS.get(name)(**options)


def build_method(method: str, method_options: dict[str, Any] | None = None):
    """The method object for ``method`` with ``method_options`` as its config fields.

    Raises:
        UnknownNameError (ValueError): unknown method (the message lists the known ones).
        TypeError: an option the method's config does not have.
        ValueError: an option out of range (from the config's validation).
    """
    spec = METHODS.get(method)
    try:
        config = spec.config(**(method_options or {}))
    except TypeError as err:
        raise TypeError(f"bad option for method {method!r}: {err}") from None
    return spec.build(config)


def generate(
    model: Any,
    input_ids: torch.Tensor,
    gen_length: int = 128,
    block_length: int = 32,
    method: str = "reference",
    method_options: dict[str, Any] | None = None,
    trace: bool = False,
) -> DLLMOutput:
    """Generate ``gen_length`` tokens after ``input_ids`` by masked diffusion, greedy.

    Args:
        model: a :class:`DLLMAdapter` (e.g. from :func:`load`) or a model with a registered adapter.
        input_ids: (B, P) int64 prompt ids in the caller's vocabulary (rows share one length P).
        gen_length: tokens to generate (G); a multiple of ``block_length``.
        block_length: tokens per semi-autoregressive block.
        method: a registered method name (``hasten.dllm.METHODS.names()``), e.g. ``"fast_dllm"``.
        method_options: the method config's fields, e.g. ``{"threshold": 0.9, "cache": "dual"}``.
        trace: keep the canvas after every step (for plots).

    Raises (all before any forward):
        ValueError: no mask token; ``gen_length`` not a positive multiple of ``block_length``;
            prompt + generation past the model's context; an empty prompt; an id outside the
            model's vocabulary; unknown method (``UnknownNameError``, a ValueError).
        TypeError: ``input_ids`` not a 2-D integer tensor, or a bad method option.

    Papers: reference = LLaDA arXiv 2502.09992; methods: see ``METHODS`` (each file names its own).
    """
    adapter: DLLMAdapter = as_adapter(model)
    check_adapter(adapter)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
        raise TypeError("input_ids must be a (batch, prompt) integer tensor")
    if input_ids.shape[1] < 1:
        raise ValueError("the prompt must hold at least one token")
    if block_length < 1 or gen_length < 1 or gen_length % block_length:
        raise ValueError(f"gen_length ({gen_length}) must be a positive multiple of block_length ({block_length})")
    prompt_len = input_ids.shape[1]
    if prompt_len + gen_length > adapter.max_length:
        raise ValueError(
            f"prompt ({prompt_len}) + gen_length ({gen_length}) = {prompt_len + gen_length} tokens is "
            f"past the model's context of {adapter.max_length}"
        )
    runner = build_method(method, method_options)
    prompt = adapter.encode_ids(input_ids.long())
    canvas = torch.cat(
        [prompt, torch.full((prompt.shape[0], gen_length), adapter.mask_id, dtype=torch.long, device=prompt.device)],
        dim=1,
    )
    stats, steps = DecodeStats(), [] if trace else None
    with torch.inference_mode():
        canvas = runner.run(adapter, canvas, prompt_len, block_length, stats, steps)
    sequences = torch.cat([input_ids.long(), adapter.decode_ids(canvas[:, prompt_len:])], dim=1)
    return DLLMOutput(sequences, stats, steps or [])
