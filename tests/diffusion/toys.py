"""Tiny float64 denoisers and hand-written samplers for the diffusion cache tests.

Dims: B batch, C channels, H/W latent size, T tokens, D model width.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

import hasten.diffusion as hd

TOY_SPEC = hd.DenoiserSpec((hd.BlockGroup("blocks", ("hidden_states",)),), timestep_arg="timestep")


class ToyBlock(nn.Module):
    """Pre-norm attention + MLP block with timestep modulation; (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.modulation = nn.Linear(dim, 2 * dim)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(temb).chunk(2, dim=-1)
        x = self.norm1(hidden_states) * (1 + scale[:, None]) + shift[:, None]
        hidden_states = hidden_states + self.attn(x, x, x, need_weights=False)[0]
        return hidden_states + self.mlp(self.norm2(hidden_states))


class ToyDenoiser(nn.Module):
    """A miniature DiT: patchify (B, C, H, W), L blocks, unpatchify; predicts a velocity.

    ``first_call_extra_tokens`` > 0 prepends that many learned tokens on the model's very
    first call only, so its blocks see a longer sequence then than later (a denoiser whose
    block features change shape mid-run).
    """

    def __init__(
        self, depth: int = 4, dim: int = 32, channels: int = 4, patch: int = 2, first_call_extra_tokens: int = 0
    ) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.time = nn.Sequential(nn.Linear(16, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.cond = nn.Linear(8, dim)
        self.blocks = nn.ModuleList(ToyBlock(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, channels * patch * patch)
        self.extra = nn.Parameter(torch.randn(1, max(first_call_extra_tokens, 1), dim))
        self.first_call_extra_tokens = first_call_extra_tokens
        self.calls = 0

    def forward(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, c, h, w = hidden_states.shape
        p = self.patch
        tokens = hidden_states.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = self.embed(tokens)
        temb = self.time(sinusoid(timestep, 16).to(x.dtype))
        if cond is not None:
            temb = temb + self.cond(cond)
        extra = self.first_call_extra_tokens if self.calls == 0 else 0
        self.calls += 1
        if extra:
            x = torch.cat([self.extra.expand(b, -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x, temb)
        x = self.out(self.norm(x[:, extra:]))
        return x.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    @contextlib.contextmanager
    def cache_context(self, name: str, **kwargs):
        """Mimics diffusers' ``CacheMixin.cache_context``: names the branch of the calls inside."""
        yield


def sinusoid(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = timestep.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def make_toy(seed: int = 0, **kwargs) -> ToyDenoiser:
    torch.manual_seed(seed)
    return ToyDenoiser(**kwargs).double().eval()


def inputs(batch: int = 1, size: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start noise (B, 4, size, size) float64, cond (B, 8) and uncond (B, 8) vectors."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, 4, size, size, generator=g, dtype=torch.float64)
    cond = torch.randn(batch, 8, generator=g, dtype=torch.float64)
    return noise, cond, torch.zeros_like(cond)


def sigmas(steps: int) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


@torch.no_grad()
def euler(model: nn.Module, noise: torch.Tensor, cond: torch.Tensor, steps: int) -> torch.Tensor:
    """Hand-written rectified-flow Euler loop, no guidance; timestep = 1000 * sigma."""
    x = noise
    s = sigmas(steps)
    for i in range(steps):
        t = (1000 * s[i]).expand(x.shape[0])
        x = x + (s[i + 1] - s[i]) * model(x, t, cond)
    return x


@torch.no_grad()
def euler_cfg(
    model: nn.Module | tuple[nn.Module, nn.Module],
    noise: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    steps: int,
    mode: str,
    scale: float = 3.0,
) -> torch.Tensor:
    """Euler loop with classifier-free guidance.

    mode: "uncond_first" / "cond_first" stack both branches in one batched call;
    "separate" calls cond then uncond at each timestep; "context" does the same inside
    ``cache_context("uncond")`` / ``cache_context("cond")``, uncond first. ``model`` may be
    a (cond_model, uncond_model) pair for the separate modes.
    """
    cond_model, uncond_model = model if isinstance(model, tuple) else (model, model)
    x = noise
    s = sigmas(steps)
    b = x.shape[0]
    for i in range(steps):
        t = (1000 * s[i]).expand(b)
        if mode in ("uncond_first", "cond_first"):
            first, second = (uncond, cond) if mode == "uncond_first" else (cond, uncond)
            out = cond_model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([first, second]))
            v_first, v_second = out.chunk(2)
            v_uncond, v_cond = (v_first, v_second) if mode == "uncond_first" else (v_second, v_first)
        elif mode == "separate":
            v_cond = cond_model(x, t, cond)
            v_uncond = uncond_model(x, t, uncond)
        elif mode == "context":
            with uncond_model.cache_context("uncond"):
                v_uncond = uncond_model(x, t, uncond)
            with cond_model.cache_context("cond"):
                v_cond = cond_model(x, t, cond)
        else:
            raise ValueError(mode)
        x = x + (s[i + 1] - s[i]) * (v_uncond + scale * (v_cond - v_uncond))
    return x


class MiniPipeline:
    """A pipeline in the diffusers style that never calls ``cache_context``: batched CFG,
    uncond first, a DDIM-like eps loop with integer timesteps 999 -> 0."""

    def __init__(self, denoiser: nn.Module) -> None:
        self.denoiser = denoiser

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, cond: torch.Tensor, num_inference_steps: int, guidance_scale: float = 4.0):
        timesteps = torch.linspace(999, 0, num_inference_steps).round().long()
        alphas = 1.0 - 0.98 * timesteps.double() / 999  # alpha_bar: 0.02 at t=999 -> 1 at t=0
        x = noise
        for i, t in enumerate(timesteps):
            batch = (torch.cat([x, x]), t.expand(2 * x.shape[0]), torch.cat([cond * 0, cond]))
            eps_u, eps_c = self.denoiser(*batch).chunk(2)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
            a, a_next = alphas[i], alphas[i + 1] if i + 1 < len(alphas) else torch.tensor(1.0, dtype=torch.float64)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x


def last_leaf(block: nn.Module) -> str:
    """Dotted name of the last registered parameterised submodule without children (e.g. the final Linear or Conv).

    Not the first leaf: DiT's forward calls ``transformer_blocks[0].norm1.emb`` itself, outside the block;
    and not a parameter-free leaf: activations are often shared and called several times per block.
    """
    leaves = [
        name
        for name, m in block.named_modules()
        if name and not list(m.children()) and list(m.parameters(recurse=False))
    ]
    return leaves[-1]


class EvaluationCounter:
    """Counts real evaluations of each block through a pre-hook on a leaf module inside it
    (``leaf``, or the block's last leaf when None).

    Independent of hasten: a block that hasten skips never runs its submodules.
    """

    def __init__(self, blocks: list[nn.Module], leaf: str | None = None) -> None:
        self.counts = [0] * len(blocks)
        self._handles = [
            block.get_submodule(leaf if leaf is not None else last_leaf(block)).register_forward_pre_hook(self._hook(i))
            for i, block in enumerate(blocks)
        ]

    def _hook(self, index: int):
        def hook(module, args):
            self.counts[index] += 1

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class LinearInTimeDenoiser(nn.Module):
    """Every block's input and output is affine in the timestep and ignores the latents:
    h0 = a + s c, block i: h -> h + s w_i, with s = timestep / 1000.

    In a loop whose timesteps are evenly spaced in the step index, every feature (residual
    or output) is linear in the step index, which a first-order Taylor forecast reproduces
    exactly, so forecasting this model must not change its output.
    """

    def __init__(self, depth: int = 4, dim: int = 4) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(dim, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(dim, dtype=torch.float64))
        self.blocks = nn.ModuleList(_TimeShiftBlock(dim) for _ in range(depth))

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor | None = None):
        b, c, h, w = hidden_states.shape
        s = (timestep.double() / 1000)[:, None, None]
        x = hidden_states.flatten(2).transpose(1, 2) * 0 + self.a + s * self.c
        for block in self.blocks:
            x = block(x, s)
        return x.transpose(1, 2).reshape(b, c, h, w)


class _TimeShiftBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, dtype=torch.float64))
        self.probe = nn.Identity()  # a leaf whose calls EvaluationCounter can count

    def forward(self, hidden_states: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.probe(hidden_states + s * self.w)
