"""``digits-mar`` and ``digits-mar-small``: MAR-style continuous-token models of the digits.

"Autoregressive Image Generation without Vector Quantization" (Li et al., arXiv 2406.11838)
in its causal, raster-order form: a transformer reads the tokens generated so far and
emits a conditioning vector z for the next token; a small MLP *diffusion head* models
p(token | z) with a DDPM and is sampled with a few denoising steps.

Tokens: the digits upsampled to 16x16 in [-1, 1] (the digits DiT's data space) cut into
2x2 patches: 64 tokens of 4 values, raster order over the 8x8 patch grid.

Diffusion head: DDPM ("Denoising Diffusion Probabilistic Models", Ho et al., arXiv
2006.11239) with :data:`TRAIN_STEPS` = 1000 training timesteps and a cosine noise schedule;
the head predicts the noise eps from (x_t, timestep, z). Sampling respaces the schedule
to S steps (S = 25 in the reference sampler) and uses the DDPM posterior with variance
beta~ (stochastic; every step is a Gaussian, so a denoising trajectory has a density,
what continuous speculative decoding verifies). Classifier-free guidance mixes the
conditional and null-class eps: ``eps = eps_u + w (eps_c - eps_u)``.

Class conditioning: sequence position 0 holds the class embedding (0-9, null class 10,
10% label drop in training); position i + 1 holds the projection of token i.

Dims: R rows, T new positions, D = 4 token values, Z width of z, L = 64 tokens.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .digits_ar import KVCache, TransformerBlock

__all__ = [
    "ARCHITECTURES",
    "TOKEN_DIM",
    "TRAIN_STEPS",
    "DigitsMAR",
    "DiffusionHead",
    "digits_patches",
    "patches_to_images",
    "alphas_cumprod",
    "respaced",
]

TOKEN_DIM = 4
TRAIN_STEPS = 1000
GRID = 8
NUM_CLASSES = 10

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "base": dict(seq_len=64, num_classes=NUM_CLASSES, dim=96, layers=3, heads=3, head_width=128, head_blocks=3),
    "small": dict(seq_len=64, num_classes=NUM_CLASSES, dim=48, layers=1, heads=2, head_width=64, head_blocks=2),
    "tiny": dict(seq_len=6, num_classes=3, dim=16, layers=1, heads=2, head_width=16, head_blocks=1),  # tests
}


def alphas_cumprod(steps: int = TRAIN_STEPS) -> torch.Tensor:
    """(steps,) float64 cumulative alpha of the cosine schedule (Nichol & Dhariwal, arXiv 2102.09672)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def respaced(num_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ``num_steps``-step respacing of the training schedule (DDPM posterior per step).

    Returns:
        timesteps: (S,) int64 training timesteps, descending (step 0 = noisiest).
        abar: (S,) float64 cumulative alpha at each of them.
        abar_prev: (S,) float64 cumulative alpha at the next (less noisy) one; 1 after the last.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    ac = alphas_cumprod()
    timesteps = torch.linspace(TRAIN_STEPS - 1, 0, num_steps).round().long()
    abar = ac[timesteps]
    abar_prev = torch.cat([abar[1:], torch.ones(1, dtype=torch.float64)])
    return timesteps, abar, abar_prev


class DiffusionHead(nn.Module):
    """MLP noise predictor eps(x_t, t, z) with residual blocks modulated by (t, z) (MAR's head, small)."""

    def __init__(self, cond_dim: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Linear(TOKEN_DIM, width)
        self.time = nn.Sequential(nn.Linear(64, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))
            for _ in range(blocks)
        )
        self.mods = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, TOKEN_DIM))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x: (N, D) noisy tokens; timesteps: (N,) training timestep values; z: (N, Z). Returns (N, D) eps."""
        half = 32
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=x.dtype) / half)
        angles = timesteps.to(x.dtype).unsqueeze(1) * freqs
        c = self.time(torch.cat([angles.sin(), angles.cos()], dim=1)) + self.cond(z)
        h = self.inp(x)
        for block, mod in zip(self.blocks, self.mods):
            scale, shift = mod(F.silu(c)).chunk(2, dim=1)
            h = h + block(h * (1 + scale) + shift)
        return self.out(h)


class DigitsMAR(nn.Module):
    """Causal AR transformer producing z per position, plus its diffusion head.

    Args: seq_len L, num_classes (null = num_classes), dim/layers/heads of the transformer,
    head_width/head_blocks of the diffusion head, dropout (training only).
    """

    def __init__(
        self,
        seq_len: int,
        num_classes: int,
        dim: int,
        layers: int,
        heads: int,
        head_width: int,
        head_blocks: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.seq_len, self.num_classes = seq_len, num_classes
        self.token_in = nn.Linear(TOKEN_DIM, dim)
        self.class_emb = nn.Embedding(num_classes + 1, dim)
        self.pos_emb = nn.Parameter(torch.zeros(seq_len, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = DiffusionHead(dim, head_width, head_blocks)
        nn.init.normal_(self.pos_emb, std=0.02)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def new_cache(self) -> KVCache:
        return KVCache([None] * len(self.blocks), [None] * len(self.blocks))

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Conditioning vectors for the next token at each new position.

        Args:
            tokens: (R, T, D) float; new sequence positions ``cache.length ..``; the entry at
                position 0 is a placeholder (class embedding used), position i + 1 = token i.
            class_ids: (R,) int64 in 0..num_classes.
            cache: appended to in place (None: full sequences, training).

        Returns:
            (R, T, Z) float z; row t conditions token ``start + t``.
        """
        start = 0 if cache is None else cache.length
        new = tokens.shape[1]
        if start + new > self.seq_len:
            raise ValueError(f"positions {start}..{start + new - 1} exceed the {self.seq_len}-token sequence")
        x = self.token_in(tokens)
        if start == 0:
            x = torch.cat([self.class_emb(class_ids).unsqueeze(1), x[:, 1:]], dim=1)
        x = x + self.pos_emb[start : start + new]
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.norm(x)


def digits_patches() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as token sequences: (1797, 64, 4) float32 in [-1, 1] and (1797,) int64 labels."""
    from hasten.diffusion.models.digits import digits_dataset

    images, labels = digits_dataset()  # (N, 1, 16, 16) in [-1, 1]
    patches = images.view(-1, GRID, 2, GRID, 2).permute(0, 1, 3, 2, 4).reshape(-1, GRID * GRID, TOKEN_DIM)
    return patches.contiguous(), labels


def patches_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 64, 4) tokens -> (B, 1, 16, 16) float32 images in [-1, 1] (clamped)."""
    grid = tokens.float().view(-1, GRID, GRID, 2, 2).permute(0, 1, 3, 2, 4).reshape(-1, 1, 2 * GRID, 2 * GRID)
    return grid.clamp(-1, 1)
