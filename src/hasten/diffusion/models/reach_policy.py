"""reach-policy: a transformer diffusion policy for the 2-D reach task (:mod:`.reach_env`).

A Diffusion Policy ("Diffusion Policy: Visuomotor Policy Learning via Action Diffusion",
Chi et al., arXiv 2303.04137) with a DiT-style transformer denoiser: it denoises an
**action chunk** of H position deltas conditioned on the observation, trained with DDPM
noise prediction ("Denoising Diffusion Probabilistic Models", Ho et al., arXiv 2006.11239;
squared-cosine schedule of Nichol & Dhariwal, arXiv 2102.09672) and sampled with
deterministic DDIM ("Denoising Diffusion Implicit Models", Song et al., arXiv 2010.02502)
in a fixed number of steps. Execution is receding-horizon: run the first
``execute_steps`` actions of each chunk, observe, replan.

The denoiser's blocks are **attention and feed-forward sub-blocks as separate modules** in
one ``nn.ModuleList`` (``blocks.0`` attention, ``blocks.1`` FFN, ``blocks.2`` attention,
...), each returning ``hidden_states + gate * f(adaLN(hidden_states, cond))``, so block
caches (and BAC's attention/FFN distinction) see them one by one. :data:`REACH_SPEC` is
registered as the built-in spec of :class:`ReachDenoiser`, so ``hd.enable(model, config)``
works without a spec.

Actions are normalised: the network sees ``action / MAX_STEP`` (in ``[-1, 1]``);
observations are world units. Dims: B batch (one row per episode), H chunk length
(horizon), A = 2 action dims, O = 4 observation dims, D model width, E episodes,
T control steps, S denoising steps.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hasten.diffusion as hd
from hasten.diffusion import models
from hasten.diffusion.methods.bac import load_schedule
from hasten.diffusion.models.reach_env import ACTION_DIM, MAX_STEP, MAX_STEPS, OBS_DIM, ReachEnv, episode_rng

MODEL_NAME = "reach-policy"
WEIGHTS_FILE = "reach-policy.safetensors"
SCHEDULE_FILE = f"bac_schedule_{MODEL_NAME}.json"
REACH_SPEC = hd.DenoiserSpec((hd.BlockGroup("blocks", ("hidden_states",)),), timestep_arg="timestep")
NOISE_STREAM = 3  # episode_rng stream of the initial noise of each replan


@dataclass(frozen=True)
class ReachPolicyConfig:
    """Architecture, diffusion schedule and execution of the policy.

    Attributes:
        horizon: H, actions per chunk (>= 1).
        width: D, transformer width (divisible by ``heads``).
        depth: transformer layers; the denoiser has ``2 * depth`` blocks (attention, FFN, ...).
        heads: attention heads.
        mlp_ratio: FFN hidden width / D.
        train_timesteps: DDPM diffusion steps the model was trained with.
        sample_steps: S, DDIM denoising steps per chunk (<= train_timesteps). Fewer = faster.
        execute_steps: actions executed per chunk before replanning (1..horizon).
    """

    horizon: int = 16
    width: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    train_timesteps: int = 100
    sample_steps: int = 50
    execute_steps: int = 8

    def __post_init__(self) -> None:
        for name in ("horizon", "width", "depth", "heads", "mlp_ratio", "train_timesteps", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.sample_steps > self.train_timesteps:
            raise ValueError(f"sample_steps {self.sample_steps} > train_timesteps {self.train_timesteps}")
        if not 1 <= self.execute_steps <= self.horizon:
            raise ValueError(f"execute_steps must be in [1, horizon={self.horizon}], got {self.execute_steps}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# ----- the denoiser -----


def timestep_embedding(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features ``(B, dim)`` float32 of timesteps ``(B,)`` (diffusion step values, not indices)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half)
    args = timestep.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _AdaLNBlock(nn.Module, abc.ABC):
    """Shared part of the two block kinds: adaLN-Zero modulation from the condition vector;
    subclasses give the residual branch (attention or FFN)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    @abc.abstractmethod
    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch: normalized, modulated ``(B, H, D)`` -> ``(B, H, D)``."""

    def forward(self, hidden_states: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``(B, H, D)`` hidden states and ``(B, D)`` condition -> ``(B, H, D)``, with the residual."""
        shift, scale, gate = self.modulation(F.silu(cond)).unsqueeze(1).chunk(3, dim=-1)
        return hidden_states + gate * self.branch(self.norm(hidden_states) * (1 + scale) + shift)


class AttentionBlock(_AdaLNBlock):
    """Self-attention over the H action tokens (an "upstream" block in BAC's terms)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__(width)
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        b, h, d = x.shape
        q, k, v = self.qkv(x).view(b, h, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).reshape(b, h, d))


class FeedForwardBlock(_AdaLNBlock):
    """Position-wise MLP (an FFN block in BAC's terms)."""

    def __init__(self, width: int, mlp_ratio: int) -> None:
        super().__init__(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * width, width)
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class ReachDenoiser(nn.Module):
    """Noise prediction for action chunks: ``(B, H, A)`` noisy chunk, ``(B,)`` timesteps, ``(B, O)`` obs -> ``(B, H, A)``."""

    def __init__(self, config: ReachPolicyConfig) -> None:
        super().__init__()
        d = config.width
        self.config = config
        self.action_in = nn.Linear(ACTION_DIM, d)
        self.position = nn.Parameter(0.02 * torch.randn(1, config.horizon, d))
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.obs_mlp = nn.Sequential(nn.Linear(OBS_DIM, d), nn.SiLU(), nn.Linear(d, d))
        blocks: list[nn.Module] = []
        for _ in range(config.depth):
            blocks += [AttentionBlock(d, config.heads), FeedForwardBlock(d, config.mlp_ratio)]
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.action_out = nn.Linear(d, ACTION_DIM)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)

    def ffn_blocks(self) -> tuple[bool, ...]:
        """For each block in call order, whether it is a feed-forward block."""
        return tuple(isinstance(b, FeedForwardBlock) for b in self.blocks)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        x = self.action_in(sample) + self.position
        cond = self.time_mlp(timestep_embedding(timestep, x.shape[-1])) + self.obs_mlp(obs.to(x.dtype))
        for block in self.blocks:
            x = block(x, cond)
        shift, scale = self.final_modulation(F.silu(cond)).unsqueeze(1).chunk(2, dim=-1)
        return self.action_out(self.final_norm(x) * (1 + scale) + shift)


hd.register_denoiser("ReachDenoiser", REACH_SPEC)


# ----- diffusion schedule (pure) -----


def cosine_alpha_bars(train_timesteps: int) -> torch.Tensor:
    """Cumulative signal fractions ``alpha_bar_t`` ``(train_timesteps,)`` float64 of the squared-cosine
    schedule (Nichol & Dhariwal, arXiv 2102.09672), each step's beta capped at 0.999."""
    s = 0.008
    t = torch.arange(train_timesteps + 1, dtype=torch.float64) / train_timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def ddim_timesteps(train_timesteps: int, sample_steps: int) -> list[int]:
    """The S timesteps (values, descending) DDIM visits. Example: ``(100, 4)`` gives ``[75, 50, 25, 0]``."""
    stride = train_timesteps // sample_steps
    return [i * stride for i in range(sample_steps)][::-1]


def ddim_step(sample: torch.Tensor, noise_pred: torch.Tensor, alpha_bar: float, alpha_bar_prev: float) -> torch.Tensor:
    """One deterministic DDIM update (eta = 0) with the predicted clean chunk clipped to ``[-1, 1]``.

    ``sample`` and ``noise_pred`` are ``(B, H, A)``; returns the sample at the previous timestep.
    """
    x0 = ((sample - math.sqrt(1 - alpha_bar) * noise_pred) / math.sqrt(alpha_bar)).clamp(-1, 1)
    eps = (sample - math.sqrt(alpha_bar) * x0) / math.sqrt(1 - alpha_bar)
    return math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps


# ----- the policy -----


class ReachPolicy:
    """A trained :class:`ReachDenoiser` plus its sampler and closed-loop execution.

    Attributes:
        denoiser: the network; enable block caches on it (``hd.enable(policy.denoiser, cfg)``).
        config: :class:`ReachPolicyConfig`.
    """

    def __init__(self, denoiser: ReachDenoiser) -> None:
        self.denoiser = denoiser.eval()
        self.config = denoiser.config
        self._alpha_bars = cosine_alpha_bars(self.config.train_timesteps).tolist()

    @torch.no_grad()
    def sample_chunks(self, obs: np.ndarray, noise: torch.Tensor) -> np.ndarray:
        """Denoise action chunks for observations ``(B, O)`` from initial noise ``(B, H, A)`` float32.

        Runs :attr:`ReachPolicyConfig.sample_steps` DDIM steps (one denoiser call each).
        Returns actions ``(B, H, A)`` float64 in world units (position deltas).
        """
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        steps = ddim_timesteps(self.config.train_timesteps, self.config.sample_steps)
        sample = noise
        for i, t in enumerate(steps):
            timestep = torch.full((len(obs_t),), t, dtype=torch.int64)
            noise_pred = self.denoiser(sample, timestep, obs_t)
            prev = self._alpha_bars[steps[i + 1]] if i + 1 < len(steps) else 1.0
            sample = ddim_step(sample, noise_pred, self._alpha_bars[t], prev)
        return sample.double().numpy() * MAX_STEP

    def initial_noise(self, seeds: np.ndarray | list[int], replan: int) -> torch.Tensor:
        """Initial noise ``(E, H, A)`` float32 of replan ``replan`` of each episode, from its seed alone."""
        shape = (self.config.horizon, ACTION_DIM)
        draws = [episode_rng(int(s), NOISE_STREAM + replan).standard_normal(shape) for s in seeds]
        return torch.as_tensor(np.stack(draws), dtype=torch.float32)

    def rollout(self, seeds: np.ndarray | list[int]) -> Rollout:
        """Closed-loop receding-horizon episodes, one per seed, all stepped together.

        Every episode replans at the same control steps (every ``execute_steps``), so one
        denoiser call serves all E episodes. Finished episodes keep their batch row (their
        actions are ignored) and every rollout makes all ``ceil(T / execute_steps)`` replans,
        so every rollout does the same denoiser work whatever happens in the episodes.
        """
        env = ReachEnv()
        obs = env.reset(seeds)
        e, h = len(obs), self.config.execute_steps
        actions = np.zeros((e, MAX_STEPS, ACTION_DIM))
        first_chunk = None
        for replan, start in enumerate(range(0, MAX_STEPS, h)):
            chunk = self.sample_chunks(obs, self.initial_noise(seeds, replan))
            first_chunk = chunk if first_chunk is None else first_chunk
            for k in range(min(h, MAX_STEPS - start)):
                running = env.running()
                actions[:, start + k] = np.where(running[:, None], chunk[:, k], 0.0)
                obs = env.step(chunk[:, k])
        state = env.state
        assert state is not None and first_chunk is not None
        return Rollout(state.success.copy(), state.side.copy(), actions, first_chunk)


@dataclass(frozen=True)
class Rollout:
    """Closed-loop results of E episodes.

    Attributes:
        success: ``(E,)`` bool.
        side: ``(E,)`` int64: +1 passed above the obstacle, -1 below, 0 never crossed x = 0.
        actions: ``(E, T, A)`` float64 executed actions in world units (zero after the end).
        first_chunk: ``(E, H, A)`` float64, the chunk sampled at the first observation (identical
            observation and noise for every method, so it measures the sampler's fidelity).
    """

    success: np.ndarray
    side: np.ndarray
    actions: np.ndarray
    first_chunk: np.ndarray

    @property
    def success_rate(self) -> float:
        return float(self.success.mean())

    def side_fractions(self) -> tuple[float, float]:
        """Fractions (0-1) of successful episodes that passed above / below the obstacle."""
        done = self.side[self.success]
        if not len(done):
            return 0.0, 0.0
        return float((done == 1).mean()), float((done == -1).mean())


# ----- loading -----


def load_reach_policy(weights_dir: Path | None = None) -> models.LoadedModel:
    """Load the shipped reach-policy (offline) from ``weights_dir`` (default: the package's ``weights/``).

    Returns:
        A :class:`~hasten.diffusion.models.LoadedModel` whose ``module`` is the
        :class:`ReachDenoiser` (eval mode, float32, CPU) and whose ``extra`` holds
        ``"policy"`` (a :class:`ReachPolicy` around that module) and, when
        ``bac_schedule_reach-policy.json`` ships beside the weights, ``"bac_config"`` (a
        :class:`~hasten.diffusion.methods.bac.BACConfig` calibrated on this model).

    Raises:
        WeightsError: the manifest or weights are missing or corrupted.
    """
    manifest = models.read_manifest(MODEL_NAME, weights_dir)
    denoiser = ReachDenoiser(ReachPolicyConfig(**manifest["config"]))
    denoiser.load_state_dict(models.load_tensors(manifest, WEIGHTS_FILE, weights_dir))
    extra: dict[str, object] = {"policy": ReachPolicy(denoiser)}
    schedule = Path(weights_dir or models.WEIGHTS_DIR) / SCHEDULE_FILE
    if schedule.is_file():
        extra["bac_config"] = load_schedule(schedule)
    return models.LoadedModel(MODEL_NAME, denoiser.eval(), manifest, extra)


models.register(MODEL_NAME, load_reach_policy)
