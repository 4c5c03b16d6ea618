"""Attention inputs for verifying a draft tree in one forward: position ids and additive
masks, including sliding-window layers. Pure functions of the tree layout; the
transformers target (:class:`hasten.targets.TransformersTarget`) calls them.

Example (a chain of two draft nodes after 3 cached tokens, one full-attention layer)::

    >>> import torch
    >>> pos, mask = tree_attention_inputs(3, (-1, 0), (None,), None, torch.float32)
    >>> pos.tolist(), tuple(mask.shape)
    ([[3, 4, 5]], (1, 1, 3, 6))
    >>> (mask[0, 0] == 0).int().tolist()  # 1 = visible
    [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .tree import tree_layout

__all__ = ["tree_attention_inputs"]


def tree_attention_inputs(
    start: int,
    parents: Sequence[int],
    windows: Sequence[int | None],
    layer_types: Sequence[str] | None,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
    """Position ids (1, N+1) int64 and the 4-D additive mask (1, 1, N+1, start+N+1) of ``dtype``
    for the root plus the N draft nodes with ``parents`` (root = -1), after ``start`` cached tokens.

    Sliding-window layers (Gemma 2/3, Mistral, ...) get their own mask: a row at position p
    also hides cached keys at positions <= p - window, and its width matches the keys such a
    layer hands to attention (the last window - 1 + N + 1 once the cache is longer than the
    window). ``windows`` has one entry per layer (None = full attention); a model mixing full
    and sliding layers gets ``{layer type: mask}`` (transformers' per-layer-type mask mapping),
    with ``layer_types`` naming each layer's type.

    Raises:
        ValueError: layers with different windows but no ``layer_types`` to say which mask each
            takes, or layers of one type with different windows.
    """
    layout = tree_layout(parents)
    depths = torch.tensor(layout.depths)
    query_pos = start + depths
    positions = query_pos.to(device).unsqueeze(0)
    n_rows = len(parents) + 1
    allowed = torch.cat([torch.ones(n_rows, start, dtype=torch.bool), layout.visible], dim=1)

    def additive(visible: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
        return mask.to(device)[None, None]

    def for_window(window: int | None) -> torch.Tensor:
        if window is None:
            return additive(allowed)
        key_pos = torch.cat([torch.arange(start), query_pos])
        visible = allowed & (key_pos[None, :] > query_pos[:, None] - window)
        return additive(visible[:, max(0, start - window + 1) :])

    distinct = dict.fromkeys(windows)
    if len(distinct) == 1:
        return positions, for_window(next(iter(distinct)))
    if not layer_types or len(layer_types) != len(windows):
        raise ValueError(
            "tree verification of a model whose layers have different attention windows needs "
            "config.layer_types to map each layer to its mask"
        )
    window_of: dict[str, int | None] = {}
    for layer_type, window in zip(layer_types, windows):
        if window_of.setdefault(layer_type, window) != window:
            raise ValueError(f"layers of type {layer_type!r} have different attention windows")
    return positions, {layer_type: for_window(window) for layer_type, window in window_of.items()}
