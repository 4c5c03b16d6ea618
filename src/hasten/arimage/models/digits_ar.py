"""``digits-ar``: a class-conditional autoregressive transformer over quantised pixel tokens
of scikit-learn's 8x8 handwritten digits.

Tokens: each of the 64 pixels (raster order, row by row) is one token, its intensity
0-16 quantised to :data:`LEVELS` = 16 levels (``round(v * 15 / 16)``); the codebook entry of
token k is the intensity ``k / 15`` in [0, 1] (1-dim "embedding", used by GSD and LANTERN
to find visually close tokens). An image is decoded to (1, 16, 16) in [-1, 1] by bilinear
2x upsampling, the layout the digits DiT's judge (:class:`hasten.diffusion.models.digits.
DigitClassifier`) reads.

Architecture: GPT-style decoder (pre-LayerNorm, causal multi-head attention, GELU MLP,
learned absolute positions, tied-free output head). Sequence position 0 holds the class
embedding (classes 0-9 and the *null class* 10 for classifier-free guidance; training
drops 10% of labels to it), position i + 1 holds image token i, and the output at
position i predicts image token i (LlamaGen's layout, "Autoregressive Model Beats
Diffusion: Llama for Scalable Image Generation", arXiv 2406.06525).

KV cache: :class:`KVCache`, one (R, H, T, Dh) key and value tensor per layer, cropped by
the samplers after a rejection (:meth:`KVCache.crop`).

Dims: R rows (images x CFG roles), T new positions, V = 16 vocabulary, L = 64 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LEVELS",
    "GRID",
    "NUM_CLASSES",
    "NULL_CLASS",
    "ARCHITECTURES",
    "DigitsAR",
    "KVCache",
    "digits_tokens",
    "tokens_to_images",
]

LEVELS = 16
GRID = 8
NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "base": dict(vocab_size=LEVELS, seq_len=GRID * GRID, num_classes=NUM_CLASSES, dim=128, layers=4, heads=4),
    "tiny": dict(vocab_size=4, seq_len=6, num_classes=3, dim=16, layers=2, heads=2),  # tests only
}


@dataclass
class KVCache:
    """Keys and values of every layer for the positions processed so far.

    Attributes:
        keys, values: per layer, (R, H, length, Dh) tensors (None before the first call).
    """

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions held (0 before the first forward)."""
        return 0 if not self.keys or self.keys[0] is None else int(self.keys[0].shape[2])

    def crop(self, length: int) -> None:
        """Keep the first ``length`` positions (drop rejected drafts)."""
        self.keys = [k[:, :, :length] for k in self.keys]
        self.values = [v[:, :, :length] for v in self.values]


class TransformerBlock(nn.Module):
    """Pre-norm causal self-attention + MLP block; x: (B, T, dim) float -> same shape (shared by digits-mar)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        rows, new, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(rows, new, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        past = 0
        if cache is not None:
            if cache.keys[layer] is not None:
                past = cache.keys[layer].shape[2]
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
            cache.keys[layer], cache.values[layer] = k, v
        mask = torch.ones(new, past + new, dtype=torch.bool, device=x.device).tril(diagonal=past)
        drop = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(rows, new, dim)))
        return x + self.drop(self.mlp(self.norm2(x)))


class DigitsAR(nn.Module):
    """The class-conditional AR transformer (see the module docstring).

    Args:
        vocab_size: V image-token ids. seq_len: L tokens per image. num_classes: classes
        (the null class is ``num_classes``). dim, layers, heads: width, depth, heads.
        dropout: training dropout (0 at inference).
    """

    def __init__(
        self, vocab_size: int, seq_len: int, num_classes: int, dim: int, layers: int, heads: int, dropout: float = 0.0
    ):
        super().__init__()
        self.vocab_size, self.seq_len, self.num_classes = vocab_size, seq_len, num_classes
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.class_emb = nn.Embedding(num_classes + 1, dim)
        self.pos_emb = nn.Parameter(torch.zeros(seq_len, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab_size)
        nn.init.normal_(self.pos_emb, std=0.02)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def new_cache(self) -> KVCache:
        return KVCache([None] * len(self.blocks), [None] * len(self.blocks))

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits for the next image token at each new position.

        Args:
            tokens: (R, T) int64; new sequence positions ``start .. start + T - 1`` where
                ``start = cache.length`` (0 without a cache). The entry at sequence
                position 0 is a placeholder (the class embedding is used there); the entry
                at position i + 1 is image token i.
            class_ids: (R,) int64 in 0..num_classes (num_classes = null class).
            cache: appended to in place; None = no cache (training, full sequences).

        Returns:
            (R, T, V) float logits; row t predicts image token ``start + t``.
        """
        start = 0 if cache is None else cache.length
        new = tokens.shape[1]
        if start + new > self.seq_len:
            raise ValueError(f"positions {start}..{start + new - 1} exceed the {self.seq_len}-token sequence")
        x = self.token_emb(tokens.clamp(0, self.vocab_size - 1))
        if start == 0:
            x = torch.cat([self.class_emb(class_ids).unsqueeze(1), x[:, 1:]], dim=1)
        x = x + self.pos_emb[start : start + new]
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.head(self.norm(x))


def digits_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits as token sequences.

    Returns:
        tokens: (1797, 64) int64 in 0..15 (raster order). labels: (1797,) int64 0-9.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    levels = np.rint(digits.images.reshape(len(digits.images), -1) * (LEVELS - 1) / 16.0).astype(np.int64)
    return torch.from_numpy(levels), torch.from_numpy(digits.target.astype(np.int64))


def tokens_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """Decode token sequences to images.

    Args:
        tokens: (B, 64) int64 in 0..15.

    Returns:
        (B, 1, 16, 16) float32 in [-1, 1] (intensity k / 15, bilinear 2x upsampling).
    """
    small = tokens.float().view(-1, 1, GRID, GRID) / (LEVELS - 1)
    images = F.interpolate(small, size=(2 * GRID, 2 * GRID), mode="bilinear", align_corners=False)
    return (images * 2 - 1).clamp(-1, 1)


def codebook() -> torch.Tensor:
    """(V, 1) float32: the intensity in [0, 1] each token stands for."""
    return (torch.arange(LEVELS, dtype=torch.float32) / (LEVELS - 1)).unsqueeze(1)


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
