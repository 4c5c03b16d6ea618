"""The decode loop's target for transformers models (:class:`TransformersTarget`)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import torch

from .. import kv
from ..compile import CompiledModel
from ..cost import load_or_measure
from ..masks import tree_attention_inputs
from ..tree import DraftTree
from .base import normalize_eos

__all__ = ["TransformersTarget"]


class TransformersTarget:
    """The decode loop's :class:`~hasten.targets.Target` for a transformers causal LM (or a
    :class:`hasten.compile.CompiledModel` wrapping one): forwards with a ``DynamicCache`` /
    preallocated cache and the KV operations of :mod:`hasten.kv`."""

    backend = "transformers"

    def __init__(self, model: torch.nn.Module | CompiledModel):
        self.compiled = model if isinstance(model, CompiledModel) else None
        model = model.model if isinstance(model, CompiledModel) else model
        self.model = model
        self.device = next(model.parameters()).device
        self.cache_kw = kv.cache_kwarg(model)
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.context_length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.windows = kv.attention_windows(model)
        self.layer_types = getattr(config, "layer_types", None)
        self.forwards = 0
        self.forward_seconds = 0.0

    def forward(
        self,
        cache,
        tokens: list[int],
        *,
        last_only: bool = False,
        position_ids: torch.Tensor | None = None,
        mask: torch.Tensor | dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits (rows, V) for ``tokens`` appended to ``cache`` (rows = 1 if last_only)."""
        kwargs: dict[str, Any] = {"use_cache": True}
        if last_only and self.keeps_logits:
            kwargs["logits_to_keep"] = 1
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if mask is not None:
            kwargs["attention_mask"] = mask
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        self.forwards += 1
        start = time.perf_counter()
        if self.compiled is not None:
            logits = self.compiled.forward(cache, input_ids=ids, **kwargs).logits[0]
        else:
            logits = self.model(input_ids=ids, **{self.cache_kw: cache}, **kwargs).logits[0]
        self.forward_seconds += time.perf_counter() - start
        return logits[-1:] if last_only else logits

    # KV-cache operations the loops use; a backend target (hasten.backends) has the same.
    def new_cache(self, static: bool = False):
        return kv.new_cache(self.model, preallocate=static)

    def cache_length(self, cache) -> int:
        return kv.cache_length(cache)

    def rollback(self, cache, length: int) -> None:
        kv.rollback(cache, length)

    def keep_rows(self, cache, start: int, rows: list[int]) -> None:
        kv.keep_rows(cache, start, rows)

    def verify_forward(self, cache, root: int, draft: DraftTree) -> torch.Tensor:
        """Logits (N+1, V) for the root and every draft node, appended to ``cache``."""
        rows = [root, *draft.tokens]
        if draft.is_chain:
            return self.forward(cache, rows)
        positions, mask = self.tree_inputs(self.cache_length(cache), draft)
        return self.forward(cache, rows, position_ids=positions, mask=mask)

    def cost_curve(self):
        return load_or_measure(self.model)

    def max_nodes(self, cache) -> int | None:
        """Most draft nodes the next verification may have (None = no limit)."""
        return None

    def eos_ids(self, eos_token_id) -> set[int]:
        return normalize_eos(
            eos_token_id, default=getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        )

    def tree_inputs(self, start: int, draft: DraftTree) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
        """Position ids (1, N+1) and the 4-D additive mask (1, 1, N+1, start+N+1) for a tree
        (see :func:`hasten.masks.tree_attention_inputs`; sliding-window layers get their own).

        Raises:
            ValueError: layers with different windows but no ``config.layer_types`` to
                say which mask each takes.
        """
        dtype = next(self.model.parameters()).dtype
        return tree_attention_inputs(start, draft.parents, self.windows, self.layer_types, dtype, self.device)
