"""A tiny random-weight reach policy for fast tests (the shipped one is trained; these are not)."""

from __future__ import annotations

import torch

from hasten.diffusion.models.reach_policy import ReachDenoiser, ReachPolicy, ReachPolicyConfig

TINY = ReachPolicyConfig(
    horizon=8, width=16, depth=2, heads=2, mlp_ratio=2, train_timesteps=20, sample_steps=5, execute_steps=8
)


def tiny_policy(seed: int = 0, config: ReachPolicyConfig = TINY) -> ReachPolicy:
    """Random weights; the adaLN modulations (zero-initialised for training) get random values
    too, so every block changes its input and caching has something to get wrong."""
    torch.manual_seed(seed)
    denoiser = ReachDenoiser(config)
    with torch.no_grad():
        for name, parameter in denoiser.named_parameters():
            if "modulation" in name:
                parameter.normal_(0.0, 0.3)
    return ReachPolicy(denoiser)
