"""What a sampler needs from an AR image model, and the adapter for hasten's own models.

A sampler talks to an :class:`ImageTokenModel`: a fixed-length token sequence, a class
label (the null class for the unconditional CFG row), a KV cache it can crop, and a decoder
from tokens to pixels. Architecture differences (where the class goes, how the cache is
held) live in adapters; samplers never touch the module.

Dims: R rows (CFG roles of one image), T new positions, V vocabulary, L tokens per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch

__all__ = ["ImageTokenModel", "DiscreteAdapter", "ContinuousAdapter"]


class ImageTokenModel(Protocol):
    """Protocol of a discrete-token AR image model.

    Attributes:
        kind: ``"discrete"``.
        seq_len: L image tokens per image. vocab_size: V. num_classes: class labels
            0..num_classes-1. null_class: the label of the unconditional CFG row.
        grid: (height, width) of the token grid (L = height * width; raster order).
        codebook: (V, D) float embedding of each token (distance = visual closeness).
    """

    kind: str
    seq_len: int
    vocab_size: int
    num_classes: int
    null_class: int
    grid: tuple[int, int]
    codebook: torch.Tensor

    def new_cache(self) -> Any:
        """An empty KV cache with ``.length`` and ``.crop(n)``."""

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """tokens (R, T) int64 at sequence positions cache.length.. (position 0 = class slot,
        position i + 1 = image token i); class_ids (R,) int64. Returns (R, T, V) logits, row t
        predicting image token ``cache.length + t`` (before the call)."""

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 tokens -> (B, C, H, W) float images in [-1, 1]."""


@dataclass
class DiscreteAdapter:
    """An :class:`ImageTokenModel` over a module with ``forward(tokens, class_ids, cache)``,
    ``new_cache()``, ``seq_len``, ``vocab_size``, ``num_classes`` (hasten's ``DigitsAR``).

    Attributes:
        module: the torch module (eval mode). grid, codebook, decoder: see the protocol.
        name: model name for records. manifest: the weights' manifest (or {}).
    """

    module: torch.nn.Module
    grid: tuple[int, int]
    codebook: torch.Tensor
    decoder: Callable[[torch.Tensor], torch.Tensor]
    name: str = "model"
    manifest: dict | None = None
    kind: str = "discrete"

    @property
    def seq_len(self) -> int:
        return int(self.module.seq_len)

    @property
    def vocab_size(self) -> int:
        return int(self.module.vocab_size)

    @property
    def num_classes(self) -> int:
        return int(self.module.num_classes)

    @property
    def null_class(self) -> int:
        return int(self.module.num_classes)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def new_cache(self) -> Any:
        return self.module.new_cache()

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        return self.module(tokens, class_ids, cache)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens)


@dataclass
class ContinuousAdapter:
    """A MAR-style continuous-token model: ``forward`` gives conditioning z per position and
    ``head(x_t, timesteps, z)`` predicts the diffusion noise (hasten's ``DigitsMAR``).

    Attributes:
        module: the torch module. decoder: (B, L, D) tokens -> images. name, manifest.
        draft: an optional smaller model of the same family (the continuous_sd draft).
    """

    module: torch.nn.Module
    decoder: Callable[[torch.Tensor], torch.Tensor]
    token_dim: int
    name: str = "model"
    manifest: dict | None = None
    draft: "ContinuousAdapter | None" = None
    kind: str = "continuous"

    @property
    def seq_len(self) -> int:
        return int(self.module.seq_len)

    @property
    def num_classes(self) -> int:
        return int(self.module.num_classes)

    @property
    def null_class(self) -> int:
        return int(self.module.num_classes)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def new_cache(self) -> Any:
        return self.module.new_cache()

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """tokens (R, T, D) float -> (R, T, Z) conditioning z."""
        return self.module(tokens, class_ids, cache)

    @torch.no_grad()
    def head(self, x: torch.Tensor, timesteps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x (N, D), timesteps (N,) int64, z (N, Z) -> (N, D) predicted noise."""
        return self.module.head(x, timesteps, z)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens)
