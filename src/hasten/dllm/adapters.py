"""Adapters: what the samplers need from a diffusion LM, as metadata plus one forward.

Shapes: B batch, T tokens in the span run, S cached positions, V vocabulary, H heads, E head width.

A sampler never touches a model class directly; it talks to a :class:`DLLMAdapter`:

* ``mask_id`` / ``eos_id``: the [MASK] and end-of-text ids *in the model's vocabulary*;
* ``max_length``: the context, in tokens (prompt + generation must fit);
* ``layers``: where the transformer blocks live (for hooks and for KV shapes);
* ``forward(ids, positions, past, return_kv)``: logits for a span of canvas positions while
  attending bidirectionally to keys/values cached for other positions (``past``), optionally
  returning the span's own keys/values - the one primitive every approximate KV cache needs;
* ``encode_ids`` / ``decode_ids``: the boundary between the user's token ids and the model's
  (identity unless the model was trained on a reduced vocabulary, like ``mdlm-small``).

Block-diffusion models (DiffusionGemma, :mod:`hasten.dllm.gemma`) see nothing after the block
being decoded; their adapters set ``block_diffusion = True`` and implement
``begin_block(canvas, start, end)`` (encode the finished prefix, reset per-block state) and
``block_forward(canvas, start, end) -> (B, N, V)`` logits, which the samplers call instead of
``forward``; a model without a [MASK] token marks undecided positions with a sentinel id
(``mask_id`` = the vocabulary size) and feeds them as its own noise.

Adapters are looked up by model type in :data:`ADAPTERS` (a :class:`hasten.registry.Registry`),
so ``as_adapter(model)`` works for any registered architecture; nothing is patched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..registry import Registry
from .models.mdlm import KV, MaskedDiffusionLM

__all__ = ["DLLMAdapter", "MDLMAdapter", "ADAPTERS", "as_adapter", "check_adapter"]


@runtime_checkable
class DLLMAdapter(Protocol):
    mask_id: int | None
    eos_id: int | None
    max_length: int
    supports_kv: bool

    @property
    def layers(self) -> Any: ...

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, past: KV | None = None, return_kv: bool = False
    ) -> tuple[torch.Tensor, KV | None]: ...

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor: ...

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor: ...


@dataclass
class MDLMAdapter:
    """Adapter for LLaDA/Dream-style masked-diffusion LMs built as :class:`MaskedDiffusionLM`
    (Llama-shaped, bidirectional attention, a [MASK] token).

    Args:
        net: the network (any dtype; logits come back in it).
        mask_id: the [MASK] id in the model's vocabulary (None: the model has none, and every
            sampler refuses it).
        eos_id: end-of-text id in the model's vocabulary, or None.
        vocab_map: optional (V,) int64 tensor, model id -> user (tokenizer) id, -1 where the model
            id has no tokenizer id (e.g. [MASK]). None: the two vocabularies are the same.
    """

    net: MaskedDiffusionLM
    mask_id: int | None
    eos_id: int | None = None
    vocab_map: torch.Tensor | None = None
    supports_kv: bool = True

    def __post_init__(self) -> None:
        self.max_length = self.net.cfg.max_len
        self._inverse = None
        if self.vocab_map is not None:
            known = self.vocab_map >= 0
            self._inverse = torch.full((int(self.vocab_map.max()) + 1,), -1, dtype=torch.long)
            self._inverse[self.vocab_map[known].long()] = torch.arange(len(self.vocab_map))[known]

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.net.blocks

    @property
    def dtype(self) -> torch.dtype:
        return self.net.embed.weight.dtype

    def forward(self, ids, positions, past=None, return_kv=False):
        """Logits ``(B, T, V)`` for ``ids (B, T) int64`` at canvas ``positions (T,) int64``; see
        :meth:`MaskedDiffusionLM.forward`."""
        return self.net(ids, positions=positions, past=past, return_kv=return_kv)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """User ids -> model ids. Raises ValueError for an id the model's vocabulary lacks."""
        if self._inverse is None:
            return ids
        inside = (ids >= 0) & (ids < len(self._inverse))
        out = torch.full_like(ids, -1)
        out[inside] = self._inverse[ids[inside]]
        if bool((out < 0).any()):
            bad = sorted({int(i) for i in ids[out < 0].tolist()})[:8]
            raise ValueError(
                f"token ids {bad} are not in this model's reduced vocabulary "
                f"({len(self.vocab_map)} tokens); see the model card in docs/DLLM.md"
            )
        return out

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Model ids -> user ids ([MASK] stays -1)."""
        return ids if self.vocab_map is None else self.vocab_map.to(ids.device)[ids]


ADAPTERS: Registry[Any] = Registry("dLLM architecture", ["hasten.dllm.gemma"], optional_modules=True)
ADAPTERS.register("mdlm", lambda model, **kw: MDLMAdapter(model, **kw), key_type=MaskedDiffusionLM)


def as_adapter(model: Any, **options: Any) -> DLLMAdapter:
    """``model`` if it already is an adapter, else the registered adapter for its type.

    Raises:
        TypeError: no adapter is registered for ``type(model)``.
    """
    if isinstance(model, DLLMAdapter):
        return model
    return ADAPTERS.for_config(model)(model, **options)


def check_adapter(adapter: DLLMAdapter) -> None:
    """Raise ValueError if the model cannot be decoded by masked diffusion (no [MASK] token)."""
    if adapter.mask_id is None:
        raise ValueError("this model has no mask token (mask_id is None); masked-diffusion decoding needs one")
    if getattr(adapter, "block_diffusion", False) and not (
        callable(getattr(adapter, "begin_block", None)) and callable(getattr(adapter, "block_forward", None))
    ):
        raise TypeError("a block-diffusion adapter must implement begin_block and block_forward")
