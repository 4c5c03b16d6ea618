"""Continuous tokens with a diffusion head (MAR-style models): the per-token DDPM sampler,
trajectory log-densities, and the reference loop.

A token x (D values) is drawn by S DDPM steps of the head conditioned on the
transformer's z: x_S ~ N(0, I) * temperature, then for s = 0..S-1 (noisiest first)
x <- mean(x, eps) + std_s * temperature * n_s with eps the CFG-guided head output
``eps_u + w (eps_c - eps_u)`` (Li et al., arXiv 2406.11838). ``mean`` is the DDPM
posterior mean given the clipped x0 prediction; ``std_s`` is the posterior standard
deviation, floored at :data:`MIN_STD` so the last step is a Gaussian too (every step has
a density, which continuous speculative decoding needs; the floor adds noise of 1% of
the pixel range).

Dims: R CFG rows, N tokens sampled together, D token values, Z width of z, S head steps.
"""

from __future__ import annotations

import math

import torch

from .core import DecodeSettings
from .methods import ImageStats
from .models.digits_mar import respaced

__all__ = [
    "MIN_STD",
    "guided_eps",
    "posterior",
    "sample_token",
    "trajectory_logpdf",
    "mar_reference_tokens",
    "annealed_steps",
]

MIN_STD = 0.01


def guided_eps(model, x: torch.Tensor, timestep: int, z: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    """CFG-guided noise prediction from one head call over every row.

    Args:
        model: a :class:`hasten.arimage.adapters.ContinuousAdapter`.
        x: (N, D) noisy tokens. timestep: training timestep value. z: (R, N, Z).

    Returns:
        (N, D) guided eps.
    """
    rows, n, width = z.shape
    t = torch.full((rows * n,), timestep, dtype=torch.int64)
    eps = model.head(x.repeat(rows, 1), t, z.reshape(rows * n, width)).view(rows, n, -1)
    return settings.rows.combine(eps, settings.cfg_scale)


def posterior(x: torch.Tensor, eps: torch.Tensor, abar: float, abar_prev: float) -> tuple[torch.Tensor, float]:
    """DDPM posterior mean (from the clipped x0 prediction) and floored std for one step.

    Args:
        x: (N, D). eps: (N, D). abar, abar_prev: cumulative alphas of this and the next step.

    Returns:
        ((N, D) mean, std).
    """
    x0 = ((x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
    alpha = abar / abar_prev
    coef_x0 = math.sqrt(abar_prev) * (1 - alpha) / (1 - abar)
    coef_x = math.sqrt(alpha) * (1 - abar_prev) / (1 - abar)
    std = max(math.sqrt((1 - alpha) * (1 - abar_prev) / (1 - abar)), MIN_STD)
    return coef_x0 * x0 + coef_x * x, std


def sample_token(
    model, z: torch.Tensor, settings: DecodeSettings, steps: int, generator: torch.Generator, record: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Draw N tokens with ``steps`` DDPM steps of the head.

    Args:
        z: (R, N, Z). steps: S >= 1. record: also return the trajectory.

    Returns:
        (N, D) tokens; the trajectory [x_S, ..., x_0] of (N, D) tensors when ``record``
        (else []); (N,) float64 log-density of the trajectory under this head (as
        :func:`trajectory_logpdf`, from the draws themselves, no extra head call).
    """
    timesteps, abar, abar_prev = respaced(steps)
    x = torch.randn(z.shape[1], model.token_dim, generator=generator, dtype=z.dtype) * settings.temperature
    path = [x] if record else []
    logpdf = torch.zeros(z.shape[1], dtype=torch.float64)
    for s in range(steps):
        mean, std = posterior(
            x, guided_eps(model, x, int(timesteps[s]), z, settings), float(abar[s]), float(abar_prev[s])
        )
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = mean + std * settings.temperature * noise
        sigma = std * settings.temperature
        logpdf += (-0.5 * noise.double() ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(dim=1)
        if record:
            path.append(x)
    return x, path, logpdf


def trajectory_logpdf(model, z: torch.Tensor, path: list[torch.Tensor], settings: DecodeSettings) -> torch.Tensor:
    """Log-density of given denoising trajectories under ``model``'s head (up to the x_S
    term, the same for every model with the same schedule), one head call per step.

    Args:
        z: (R, N, Z). path: S + 1 tensors (N, D), noisiest first (from :func:`sample_token`).

    Returns:
        (N,) float64 sum over steps and values of log N(x_{s+1}; mean_s, (std_s * temperature)^2).
    """
    steps = len(path) - 1
    timesteps, abar, abar_prev = respaced(steps)
    total = torch.zeros(path[0].shape[0], dtype=torch.float64)
    for s in range(steps):
        mean, std = posterior(
            path[s], guided_eps(model, path[s], int(timesteps[s]), z, settings), float(abar[s]), float(abar_prev[s])
        )
        sigma = std * settings.temperature
        diff = (path[s + 1] - mean).double()
        total += (-0.5 * (diff / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(dim=1)
    return total


ANNEAL_SCHEDULES = ("linear", "cosine", "two_stage")


def annealed_steps(
    position: int, length: int, start: int, end: int, schedule: str = "linear", switch: float = 0.25
) -> int:
    """Head steps for token ``position`` of ``length`` under a DiSA anneal start -> end.

    Schedules (the three the DiSA paper compares): ``linear`` in the token position;
    ``cosine``: ``end + (start - end) * (1 + cos(pi * progress)) / 2`` (slow start and
    finish); ``two_stage``: ``start`` for the first ``ceil(switch * length)`` tokens, then
    ``end``. ``progress = position / (length - 1)``; counts are rounded, at least 1.

    Examples: length 5, start 25, end 5: linear -> 25, 20, 15, 10, 5; cosine -> 25, 22,
    15, 8, 5; two_stage with switch 0.4 -> 25, 25, 5, 5, 5.

    Raises:
        ValueError: an unknown schedule.
    """
    if schedule == "two_stage":
        return start if position < math.ceil(switch * length) else end
    progress = position / max(1, length - 1)
    if schedule == "linear":
        weight = 1.0 - progress
    elif schedule == "cosine":
        weight = (1.0 + math.cos(math.pi * progress)) / 2
    else:
        raise ValueError(f"unknown anneal schedule {schedule!r}; use one of {ANNEAL_SCHEDULES}")
    return max(1, round(end + (start - end) * weight))


def mar_reference_tokens(
    model, label: int, settings: DecodeSettings, generator: torch.Generator, head_steps: int | list[int]
) -> tuple[torch.Tensor, ImageStats]:
    """Plain AR sampling of one continuous-token image (the reference; also DiSA with a
    per-position ``head_steps`` list).

    Returns:
        ((L, D) float tokens, counters).
    """
    rows = settings.rows
    class_ids = rows.class_ids(label, model.null_class)
    cache, stats = model.new_cache(), ImageStats()
    inputs = torch.zeros(len(rows.roles), 1, model.token_dim, dtype=model.dtype)
    tokens = []
    for i in range(model.seq_len):
        steps = head_steps[i] if isinstance(head_steps, list) else head_steps
        z = model.forward(inputs, class_ids, cache)  # (R, 1, Z)
        x, _, _ = sample_token(model, z, settings, steps, generator)
        tokens.append(x[0])
        inputs = x.unsqueeze(0).expand(len(rows.roles), -1, -1)
        stats.forwards += 1
        stats.head_calls += steps
        stats.accepted_per_forward.append(1)
    stats.tokens = len(tokens)
    return torch.stack(tokens), stats
