"""Block outputs as features: flatten, rebuild, residuals.

A *feature* is what a cache method stores, reuses or forecasts for one block: a tuple of
tensors, each shaped like one tensor of the block's output with batch B as dim 0.

* **residual** feature: ``output - input`` for each hidden-state output (FORA, Δ-DiT,
  First Block Cache and TaylorSeer at block level). Rebuilt as ``current input + feature``,
  so the current step's input still flows through. Defined only when every tensor the
  block returns is the new value of one of its inputs with the same shape and dtype
  (transformer blocks; not UNet down/up blocks, which change resolution).
* **output** feature: every tensor of the output, in flattening order. Rebuilt by putting
  the tensors back into the output's structure (:class:`Layout`).

All functions here are pure; nothing keeps state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Feature = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Layout:
    """The structure of a block output with its tensors taken out.

    ``tree`` is ``None`` for a tensor leaf, ``(container_type, children)`` for a tuple or
    list, or ``("const", value)`` for anything else (kept by reference, e.g. ``None``).
    """

    tree: Any

    def tensor_positions(self) -> tuple[bool, ...] | None:
        """For a top-level tuple/list: which positions hold a tensor, else None.

        A bare tensor output counts as a one-element tuple: ``(True,)``.
        """
        if self.tree is None:
            return (True,)
        kind, children = self.tree
        if kind == "const":
            return None
        return tuple(child is None for child in children)


def flatten(output: Any) -> tuple[list[torch.Tensor], Layout]:
    """Split a block output into its tensors (depth-first) and its :class:`Layout`.

    Example: ``flatten((a, (b, c), None))`` gives ``[a, b, c]`` and a layout that
    :func:`unflatten` turns back into ``(a', (b', c'), None)``.
    """
    tensors: list[torch.Tensor] = []

    def walk(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            tensors.append(node)
            return None
        if isinstance(node, (tuple, list)):
            return (type(node), tuple(walk(child) for child in node))
        return ("const", node)

    return tensors, Layout(walk(output))


def unflatten(layout: Layout, tensors: Sequence[torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`: put ``tensors`` (depth-first order) back into ``layout``.

    Raises:
        ValueError: the number of tensors does not match the layout.
    """
    remaining = list(tensors)[::-1]

    def build(node: Any) -> Any:
        if node is None:
            if not remaining:
                raise ValueError("fewer tensors than the layout holds")
            return remaining.pop()
        kind, payload = node
        if kind == "const":
            return payload
        items = [build(child) for child in payload]
        return kind(*items) if hasattr(kind, "_fields") else kind(items)  # namedtuples take positional fields

    result = build(layout.tree)
    if remaining:
        raise ValueError(f"{len(remaining)} more tensors than the layout holds")
    return result


def top_level(output: Any) -> tuple[Any, ...]:
    """A block output as a tuple of its top-level items (a bare tensor becomes ``(tensor,)``)."""
    return tuple(output) if isinstance(output, (tuple, list)) else (output,)


def residual_inputs(
    output: Any, inputs: Mapping[str, Any], output_names: Sequence[str | None]
) -> tuple[torch.Tensor, ...] | None:
    """The input tensors that the output's tensors are residual updates of, or None.

    ``output_names[j]`` names the block argument that top-level output ``j`` is the new
    value of (None: not a hidden state). Returns, in output order, one input tensor per
    output tensor when every output tensor has a same-shape, same-dtype named input;
    otherwise None (the block has no residual feature, e.g. a UNet block that downsamples).

    Example: a Flux block returning ``(encoder_hidden_states, hidden_states)`` with
    ``output_names=("encoder_hidden_states", "hidden_states")`` gives both inputs.
    """
    items = top_level(output)
    if len(items) != len(output_names):
        return None
    matched = []
    for item, name in zip(items, output_names):
        if item is None:
            continue
        source = inputs.get(name) if name is not None else None
        if not (isinstance(item, torch.Tensor) and isinstance(source, torch.Tensor)):
            return None
        if item.shape != source.shape or item.dtype != source.dtype:
            return None
        matched.append(source)
    return tuple(matched)


def layout_sources(
    layout: Layout, inputs: Mapping[str, Any], output_names: Sequence[str | None]
) -> tuple[torch.Tensor, ...] | None:
    """The current input tensors that an output of ``layout`` would update, or None.

    Like :func:`residual_inputs` but from a remembered layout instead of a fresh output:
    what rebuilding a skipped block's output needs.
    """
    positions = layout.tensor_positions()
    if positions is None or len(positions) != len(output_names):
        return None
    sources = []
    for is_tensor, name in zip(positions, output_names):
        if not is_tensor:
            continue
        source = inputs.get(name) if name is not None else None
        if not isinstance(source, torch.Tensor):
            return None
        sources.append(source)
    return tuple(sources)


def residual_feature(output: Any, sources: Sequence[torch.Tensor]) -> Feature:
    """``output - input`` for each output tensor (``sources`` from :func:`residual_inputs`)."""
    tensors = [item for item in top_level(output) if item is not None]
    return tuple((out - src).detach() for out, src in zip(tensors, sources))


def output_feature(output: Any) -> Feature:
    """Every tensor of the output, detached copies (callers may modify outputs in place)."""
    tensors, _ = flatten(output)
    return tuple(t.detach().clone() for t in tensors)


def apply_residual(layout: Layout, sources: Sequence[torch.Tensor], feature: Feature) -> Any:
    """Rebuild an output from the current inputs plus a residual feature.

    With ``feature`` all zeros this passes the hidden states through unchanged; see
    :func:`pass_through`, which does so without arithmetic.
    """
    return _rebuild_top_level(layout, [src + delta for src, delta in zip(sources, feature)])


def pass_through(layout: Layout, sources: Sequence[torch.Tensor]) -> Any:
    """Rebuild an output whose hidden states are the block's inputs, unchanged."""
    return _rebuild_top_level(layout, list(sources))


def _rebuild_top_level(layout: Layout, tensors: list[torch.Tensor]) -> Any:
    positions = layout.tensor_positions()
    if positions is None:
        raise ValueError("the output layout has no top-level tensors")
    if layout.tree is None:
        return tensors[0]
    kind, children = layout.tree
    remaining = tensors[::-1]
    items = [remaining.pop() if is_tensor else child[1] for is_tensor, child in zip(positions, children)]
    return kind(*items) if hasattr(kind, "_fields") else kind(items)
