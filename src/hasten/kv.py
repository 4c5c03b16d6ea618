"""The engine's KV cache: creation, rollback and tree-path compaction.

The only module that knows how transformers lays out its caches: a ``DynamicCache``
whose ``layers`` hold ``keys``/``values`` of shape (B, heads, T, head_dim). Sliding-window
layers (Gemma 3, Mistral) are switched to record their full past so they can be rolled
back; layers that cannot be rolled back (linear-attention / recurrent state) are refused.

Dims: T cached tokens.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache

__all__ = ["new_cache", "cache_length", "rollback", "keep_rows", "cache_kwarg"]


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward keyword that takes the cache: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (older models and remote code)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model: torch.nn.Module) -> DynamicCache:
    """An empty dynamic cache for ``model`` whose every layer can be rolled back.

    Raises:
        ValueError: the model has a layer type whose state cannot be cropped.
    """
    cache = DynamicCache(config=model.config)
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False) and hasattr(layer, "activate_past_recording"):
            layer.activate_past_recording()
        if not hasattr(layer, "crop") or not getattr(layer, "is_croppable", True):
            raise ValueError(f"{type(layer).__name__} cache layers cannot be rolled back; "
                             "speculative decoding needs an attention KV cache")
    return cache


def cache_length(cache: DynamicCache) -> int:
    """Number of tokens cached (T)."""
    return cache.get_seq_length()


def _select(cache: DynamicCache, index) -> None:
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", True) or getattr(layer, "keys", None) is None:
            continue
        layer.keys = layer.keys[..., index, :]
        layer.values = layer.values[..., index, :]
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = layer.keys.shape[-2]


def rollback(cache: DynamicCache, length: int) -> None:
    """Drop every cached token past the first ``length`` (in place), in every layer
    (layers may differ in length after a drafter ran only some of them)."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is not None and keys.dim() == 4 and keys.shape[-2] > length:
            layer.keys = keys[..., :length, :]
            layer.values = layer.values[..., :length, :]
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = length


def keep_rows(cache: DynamicCache, start: int, rows: list[int]) -> None:
    """Compact the cache after a tree verification (in place).

    Keeps the first ``start`` tokens, then the tokens at ``start + r`` for each ``r`` in
    ``rows`` (ascending), dropping every other row the verification appended.

    Args:
        cache: cache holding T >= start + max(rows) + 1 tokens.
        start: tokens cached before the verification forward.
        rows: verification rows to keep (0 = the root, i+1 = draft node i).

    Example: start 10, rows [0, 2, 5] keeps positions 0..9, 10, 12, 15 -> T = 13.
    """
    if rows == list(range(len(rows))):
        rollback(cache, start + len(rows))
        return
    index = torch.tensor(list(range(start)) + [start + r for r in rows], dtype=torch.long)
    device = next((l.keys.device for l in cache.layers if getattr(l, "keys", None) is not None), None)
    _select(cache, index.to(device) if device is not None else index)
