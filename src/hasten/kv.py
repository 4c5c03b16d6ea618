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
from transformers.cache_utils import DynamicLayer

__all__ = [
    "new_cache",
    "attention_windows",
    "cache_length",
    "rollback",
    "keep_rows",
    "cache_kwarg",
    "PreallocatedLayer",
    "num_layers",
    "cache_device",
    "key_span",
    "gather_positions",
    "append_span",
    "bytes_per_token",
]


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward keyword that takes the cache: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (older models and remote code)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class PreallocatedLayer(DynamicLayer):
    """A full-attention KV layer backed by preallocated buffers written in place.

    ``keys``/``values`` are views ``buffer[..., :length, :]`` of shape (B, heads, T,
    head_dim); appending writes into the buffer (capacity doubles when full) instead of
    concatenating a new tensor each step, rollback only moves ``length``, and tree-path
    compaction copies the kept rows down in place. Attention still runs over the T live
    tokens only.
    """

    def __init__(self, capacity: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.capacity, self.length = capacity, 0
        self._keys_buffer = self._values_buffer = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._allocate(key_states, value_states, max(self.capacity, key_states.shape[-2]))
        self.is_initialized = True

    def _allocate(self, key_like: torch.Tensor, value_like: torch.Tensor, capacity: int) -> None:
        old_k, old_v = self._keys_buffer, self._values_buffer
        shape_k = (*key_like.shape[:2], capacity, key_like.shape[-1])
        shape_v = (*value_like.shape[:2], capacity, value_like.shape[-1])
        self._keys_buffer = torch.empty(shape_k, dtype=key_like.dtype, device=key_like.device)
        self._values_buffer = torch.empty(shape_v, dtype=value_like.dtype, device=value_like.device)
        if old_k is not None and self.length:
            self._keys_buffer[..., : self.length, :].copy_(old_k[..., : self.length, :])
            self._values_buffer[..., : self.length, :].copy_(old_v[..., : self.length, :])
        self.capacity = capacity

    def _publish(self) -> None:
        self.keys = self._keys_buffer[..., : self.length, :]
        self.values = self._values_buffer[..., : self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self.length + new > self.capacity:
            self._allocate(key_states, value_states, max(2 * self.capacity, self.length + new))
        self._keys_buffer[..., self.length : self.length + new, :].copy_(key_states)
        self._values_buffer[..., self.length : self.length + new, :].copy_(value_states)
        self.length += new
        self._publish()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` tokens (no copy)."""
        self.length = min(self.length, length)
        if self.is_initialized:
            self._publish()

    def keep(self, start: int, index: torch.Tensor) -> None:
        """Keep tokens ``[0, start)`` then those at ``index`` (absolute, ascending), in place."""
        n = index.numel()
        self._keys_buffer[..., start : start + n, :] = self._keys_buffer.index_select(2, index)
        self._values_buffer[..., start : start + n, :] = self._values_buffer.index_select(2, index)
        self.length = start + n
        self._publish()


def new_cache(model: torch.nn.Module, preallocate: bool = False) -> DynamicCache:
    """An empty dynamic cache for ``model`` whose every layer can be rolled back.

    Args:
        model: the causal LM the cache is for.
        preallocate: back full-attention layers with :class:`PreallocatedLayer` (in-place
            writes, rollback and compaction) instead of growing tensors by concatenation.

    Raises:
        ValueError: the model has a layer type whose state cannot be cropped.
    """
    cache = DynamicCache(config=model.config)
    if preallocate:
        cache.layers = [PreallocatedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False) and hasattr(layer, "activate_past_recording"):
            layer.activate_past_recording()
        if not hasattr(layer, "crop") or not getattr(layer, "is_croppable", True):
            raise ValueError(
                f"{type(layer).__name__} cache layers cannot be rolled back; "
                "speculative decoding needs an attention KV cache"
            )
    return cache


def attention_windows(model: torch.nn.Module) -> list[int | None]:
    """Per decoder layer, the sliding window of a sliding-window attention layer (a key
    at position j is visible from position p when p - window < j <= p), or None for full
    attention, as the layers of :func:`new_cache` will hold them."""
    return [
        layer.sliding_window if getattr(layer, "is_sliding", False) else None
        for layer in DynamicCache(config=model.config).layers
    ]


def cache_length(cache: DynamicCache) -> int:
    """Number of tokens cached (T)."""
    return cache.get_seq_length()


def rollback(cache: DynamicCache, length: int) -> None:
    """Drop every cached token past the first ``length`` (in place), in every layer
    (layers may differ in length after a drafter ran only some of them)."""
    for layer in cache.layers:
        if isinstance(layer, PreallocatedLayer):
            layer.truncate(length)
            continue
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
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if keys is None or keys.dim() != 4:
            continue
        tail = torch.tensor([start + r for r in rows], dtype=torch.long, device=keys.device)
        if isinstance(layer, PreallocatedLayer):
            layer.keep(start, tail)
            continue
        layer.keys = torch.cat([keys[..., :start, :], keys.index_select(2, tail)], dim=2)
        layer.values = torch.cat([layer.values[..., :start, :], layer.values.index_select(2, tail)], dim=2)
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = layer.keys.shape[-2]


# --- read-only views and copies for drafters that keep a second cache (hierarchical) ---------


def num_layers(cache: DynamicCache) -> int:
    """Decoder layers the cache holds."""
    return len(cache.layers)


def cache_device(cache: DynamicCache) -> torch.device:
    """Where the cache's tensors live (of its first layer)."""
    return cache.layers[0].keys.device


def key_span(cache: DynamicCache, start: int, end: int) -> torch.Tensor:
    """Keys of positions ``start:end`` of every layer, first batch row:
    (layers, kv_heads, end - start, head_dim). A view where the layers allow it; do not modify."""
    return torch.stack([layer.keys[0, :, start:end, :] for layer in cache.layers])


def gather_positions(cache: DynamicCache, positions: list[list[int]], model: torch.nn.Module) -> DynamicCache:
    """A new cache for ``model`` holding, in layer i, the entries of ``cache`` at
    ``positions[i]`` (in that order): a partial KV cache (TriForce's retrieval cache)."""
    out = DynamicCache(config=model.config)
    for i, layer in enumerate(cache.layers):
        index = torch.tensor(positions[i], dtype=torch.long, device=layer.keys.device)
        out.update(layer.keys.index_select(-2, index), layer.values.index_select(-2, index), i)
    return out


def append_span(dst: DynamicCache, src: DynamicCache, start: int, end: int) -> None:
    """Append the entries of positions ``start:end`` of every layer of ``src`` to ``dst``."""
    for i, layer in enumerate(src.layers):
        dst.update(layer.keys[..., start:end, :], layer.values[..., start:end, :], i)


def bytes_per_token(cache: DynamicCache | None) -> int:
    """Bytes one cached token takes across all layers (keys and values, first batch row);
    0 for an empty or missing cache."""
    if cache is None or not cache.layers or getattr(cache.layers[0], "keys", None) is None:
        return 0
    return sum(2 * layer.keys[0, :, :1].numel() * layer.keys.element_size() for layer in cache.layers)
