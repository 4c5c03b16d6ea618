"""Where a denoiser's blocks live and what they return: architecture as metadata.

A :class:`DenoiserSpec` lists the denoiser's block groups in the order its ``forward``
calls them, and for each group which input argument every top-level output is the new
value of. Built-in specs cover diffusers' Flux, SD3, PixArt, DiT and Wan transformers and
``UNet2DConditionModel``; for any other ``nn.Module`` pass a spec to
:func:`hasten.diffusion.enable` or register one with :func:`register_denoiser`.

Specs are keyed by class *name*, so this module never imports diffusers.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BlockGroup:
    """One attribute of the denoiser holding blocks.

    Attributes:
        path: dotted attribute path from the denoiser, e.g. ``"transformer_blocks"``. It may
            name an ``nn.ModuleList``/``nn.Sequential`` (each child is a block), a single
            module (one block), or ``None`` at runtime (an optional block, skipped).
        outputs: for each top-level item of the block's return value, the name of the
            ``forward`` argument it is the new value of, or None when it is not a hidden
            state. A block returning one tensor has one entry. Example, Flux blocks
            return ``(encoder_hidden_states, hidden_states)``:
            ``outputs=("encoder_hidden_states", "hidden_states")``.
    """

    path: str
    outputs: tuple[str | None, ...] = ("hidden_states",)

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("BlockGroup.path must be a non-empty attribute path")
        if not self.outputs:
            raise ValueError("BlockGroup.outputs needs one entry per top-level output item")


@dataclass(frozen=True)
class DenoiserSpec:
    """The blocks of a denoiser, in call order, and where its timestep comes in.

    Attributes:
        groups: block groups in the order ``forward`` calls them.
        timestep_arg: name of the ``forward`` argument carrying the timestep (a number or
            a tensor; its maximum is used), used to detect where a sampling run starts and
            which calls share a step. None: the denoiser takes no timestep; runs are then
            told apart only by input shapes or :meth:`CacheHandle.run`.
    """

    groups: tuple[BlockGroup, ...]
    timestep_arg: str | None = "timestep"

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("DenoiserSpec.groups must name at least one block group")


@dataclass(frozen=True)
class BlockRef:
    """One resolved block: its dotted name, the module, and its argument names."""

    name: str
    module: torch.nn.Module
    outputs: tuple[str | None, ...]
    parameters: tuple[str, ...]

    def named_inputs(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments named in ``outputs`` for one call, by name (missing ones omitted)."""
        found = {}
        for name in self.outputs:
            if name is None:
                continue
            if name in kwargs:
                found[name] = kwargs[name]
            elif name in self.parameters and self.parameters.index(name) < len(args):
                found[name] = args[self.parameters.index(name)]
        return found


_DUAL_STREAM = ("encoder_hidden_states", "hidden_states")

_BUILTIN: dict[str, DenoiserSpec] = {}


def register_denoiser(class_name: str, spec: DenoiserSpec) -> None:
    """Make ``spec`` the built-in spec for denoisers whose class (or a base class) is named ``class_name``."""
    _BUILTIN[class_name] = spec


register_denoiser(
    "FluxTransformer2DModel",
    DenoiserSpec(
        (BlockGroup("transformer_blocks", _DUAL_STREAM), BlockGroup("single_transformer_blocks", _DUAL_STREAM))
    ),
)
register_denoiser("SD3Transformer2DModel", DenoiserSpec((BlockGroup("transformer_blocks", _DUAL_STREAM),)))
register_denoiser("PixArtTransformer2DModel", DenoiserSpec((BlockGroup("transformer_blocks"),)))
register_denoiser("DiTTransformer2DModel", DenoiserSpec((BlockGroup("transformer_blocks"),)))
register_denoiser("WanTransformer3DModel", DenoiserSpec((BlockGroup("blocks"),)))
register_denoiser(
    "UNet2DConditionModel",
    DenoiserSpec(
        (
            BlockGroup("down_blocks", ("hidden_states", None)),  # returns (hidden_states, skip tensors)
            BlockGroup("mid_block"),
            BlockGroup("up_blocks"),
        )
    ),
)


def builtin_spec(module: torch.nn.Module) -> DenoiserSpec | None:
    """The registered spec for ``module``'s class or nearest registered base class, or None."""
    for cls in type(module).__mro__:
        if cls.__name__ in _BUILTIN:
            return _BUILTIN[cls.__name__]
    return None


def forward_parameters(module: torch.nn.Module) -> tuple[str, ...]:
    """Names of ``module.forward``'s parameters in positional order (``self`` excluded)."""
    return tuple(inspect.signature(module.forward).parameters)


def resolve_blocks(module: torch.nn.Module, spec: DenoiserSpec) -> list[BlockRef]:
    """The denoiser's blocks in call order.

    Raises:
        ValueError: a group path does not exist, is not a module, or no blocks are found.
    """
    blocks: list[BlockRef] = []
    for group in spec.groups:
        target: Any = module
        for part in group.path.split("."):
            if not hasattr(target, part):
                raise ValueError(f"{type(module).__name__} has no attribute path {group.path!r}")
            target = getattr(target, part)
        if target is None:
            continue
        if not isinstance(target, torch.nn.Module):
            raise ValueError(f"{group.path!r} is a {type(target).__name__}, not an nn.Module")
        children = (
            list(target.named_children())
            if isinstance(target, (torch.nn.ModuleList, torch.nn.Sequential))
            else [("", target)]
        )
        for child_name, child in children:
            name = f"{group.path}.{child_name}" if child_name else group.path
            blocks.append(BlockRef(name, child, group.outputs, forward_parameters(child)))
    if not blocks:
        raise ValueError(f"no blocks found in {type(module).__name__} for {spec}")
    return blocks
