"""Left padding of a batch-1 prompt: honour ``attention_mask`` the way ``model.generate`` does.

A tokenizer with ``padding_side="left"`` (or a batch padded and then sliced to one row)
gives ``input_ids`` whose leading positions are pads masked out by ``attention_mask``.
``model.generate`` decodes such a row exactly as the unpadded prompt (the pads are never
attended to and positions start at the first real token) and returns the pads in front of
the output. :func:`split_left_padding` separates the pads so the engine decodes the real
prompt only; the engine then puts the pads back in front of ``sequences``.

Dims: T prompt tokens (pads included).
"""

from __future__ import annotations

import torch

__all__ = ["split_left_padding"]


def split_left_padding(input_ids, attention_mask=None) -> tuple[list[int], object]:
    """Split leading masked-out pads from a batch-1 prompt.

    Args:
        input_ids: (1, T) or (T,) int64 ids, a list of ints, or a ``BatchEncoding`` / dict
            with ``input_ids`` (and optionally ``attention_mask``).
        attention_mask: (1, T) or (T,) 0/1 mask, or None (the dict's own mask, if any, is
            used; giving both raises).

    Returns:
        (pad ids, the prompt without them): the ids at masked positions, in order, and
        ``input_ids`` with those positions removed (same type as given when it was a tensor
        or list; the ``input_ids`` tensor when a dict was given).

    Raises:
        ValueError: a mask whose zeros are not all leading (right padding or holes: not
            what ``generate`` of one sequence means), a mask of another length, or a mask
            given twice.

    Example: ids [0, 0, 5, 7], mask [0, 0, 1, 1] -> ([0, 0], [5, 7]).
    """
    if hasattr(input_ids, "keys") and "input_ids" in input_ids:  # BatchEncoding / dict
        if attention_mask is not None and input_ids.get("attention_mask") is not None:
            raise ValueError("attention_mask given twice: in input_ids and as attention_mask=")
        if attention_mask is None:
            attention_mask = input_ids.get("attention_mask")
        input_ids = input_ids["input_ids"]
    if attention_mask is None or (
        isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[0] != 1
    ):
        return (
            [],
            input_ids,
        )  # no mask, or a batch the engine refuses with its own message
    mask = torch.as_tensor(attention_mask).reshape(-1).tolist()
    ids = input_ids.reshape(-1).tolist() if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if len(mask) != len(ids):
        raise ValueError(f"attention_mask has {len(mask)} positions but input_ids has {len(ids)}")
    pads = next((i for i, m in enumerate(mask) if m), len(mask))
    if any(not m for m in mask[pads:]) or any(m not in (0, 1, True, False) for m in mask):
        raise ValueError(
            "attention_mask must be 0 for leading pads and 1 for every later position; right padding "
            "or masked positions inside the prompt are not supported (strip them)"
        )
    if not pads:
        return [], input_ids
    if isinstance(input_ids, torch.Tensor):
        rest = input_ids[..., pads:]
    else:
        rest = list(input_ids)[pads:]
    return [int(t) for t in ids[:pads]], rest
