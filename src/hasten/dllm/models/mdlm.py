"""A small Llama-shaped masked-diffusion LM (the LLaDA objective), in plain torch.

Shapes: B batch, T canvas tokens in one forward, S cached key/value positions, V vocabulary,
D model width, H heads, E head width (D / H).

The network is a Llama decoder stack (RMSNorm, rotary position embedding, SwiGLU MLP, tied
input/output embedding) with *bidirectional* attention: every query sees every key (no causal
mask), as in LLaDA (Nie et al., "Large Language Diffusion Models", arXiv 2502.09992). It is
written here rather than taken from transformers so that a forward can run over any *span* of
canvas positions while attending to keys/values cached for the other positions, which is what
the approximate KV caches of Fast-dLLM (arXiv 2505.22618) and dKV-Cache (arXiv 2505.15781)
need; the keys are stored after the rotary embedding, so cached entries keep their positions.

Example::

    >>> cfg = MDLMConfig(vocab_size=11, dim=16, n_layers=1, n_heads=2, mlp_dim=32, max_len=8)
    >>> net = MaskedDiffusionLM(cfg)
    >>> logits, kv = net(torch.tensor([[1, 2, 3]]), return_kv=True)
    >>> tuple(logits.shape), len(kv), tuple(kv[0][0].shape)
    ((1, 3, 11), 1, (1, 2, 3, 8))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MDLMConfig", "MaskedDiffusionLM", "KV"]

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (B, H, S, E), keys rotated


@dataclass(frozen=True)
class MDLMConfig:
    """Architecture of :class:`MaskedDiffusionLM` (all sizes in units: tokens / channels)."""

    vocab_size: int
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 6
    mlp_dim: int = 512
    max_len: int = 384
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even width")
        if min(self.vocab_size, self.dim, self.n_layers, self.mlp_dim, self.max_len) < 1:
            raise ValueError("all sizes must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate ``x: (B, H, T, E)`` by the rotary embedding of ``positions: (T,) int64`` (half-split form)."""
    half = x.shape[-1] // 2
    freqs = theta ** (-torch.arange(half, dtype=torch.float64, device=x.device) / half)
    angles = positions.to(torch.float64)[:, None] * freqs[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg: MDLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.mlp_dim, bias=False)
        self.down = nn.Linear(cfg.mlp_dim, cfg.dim, bias=False)

    def forward(self, x, positions, past, key_mask):
        b, t, d = x.shape
        h = self.cfg.n_heads
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, positions, self.cfg.rope_theta), rotary(k, positions, self.cfg.rope_theta)
        new = (k, v)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up), new


class MaskedDiffusionLM(nn.Module):
    """Bidirectional Llama-shaped transformer predicting the clean token at every position.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: MDLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        nn.init.normal_(self.embed.weight, std=0.02)
        for blk in self.blocks:
            for lin in (blk.qkv, blk.gate_up):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (blk.out, blk.down):
                nn.init.normal_(lin.weight, std=0.02 / (2 * cfg.n_layers) ** 0.5)

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        past: KV | None = None,
        key_mask: torch.Tensor | None = None,
        return_kv: bool = False,
    ):
        """Logits for every token of ``ids``.

        Args:
            ids: (B, T) int64 token ids of the span being run.
            positions: (T,) int64 canvas positions of those tokens (default ``0..T-1``).
            past: per layer (keys, values) of shape (B, H, S, E) for other canvas positions,
                keys already rotated; every query attends to them and to the span (bidirectional).
            key_mask: optional (B, 1, 1, S + T) bool, False for keys to ignore (left padding).
            return_kv: also return the span's own (keys, values) per layer.

        Returns:
            logits (B, T, V) in the parameters' dtype, and the span's KV (or None).
        """
        t = ids.shape[1]
        if positions is None:
            positions = torch.arange(t, device=ids.device)
        if int(positions.max()) >= self.cfg.max_len:
            raise ValueError(f"position {int(positions.max())} is past the context of {self.cfg.max_len} tokens")
        x = self.embed(ids)
        kv: KV = []
        for i, blk in enumerate(self.blocks):
            x, new = blk(x, positions, None if past is None else past[i], key_mask)
            kv.append(new)
        logits = self.norm(x) @ self.embed.weight.T
        return logits, (kv if return_kv else None)
