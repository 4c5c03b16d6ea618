"""``continuous_sd``: continuous speculative decoding (Wang et al., "Continuous Speculative
Decoding for Autoregressive Image Generation", arXiv 2411.11925) for MAR-style models.

A smaller model of the same family (``model.draft``: its own transformer and diffusion
head, the same DDPM schedule and step count) drafts ``gamma`` tokens one at a time,
recording each denoising trajectory. One target forward over [last committed token,
drafts] gives the target's z for every drafted position; the target head then scores
every draft trajectory (S head calls, batched over the drafts). Densities of continuous
tokens are compared on the whole denoising trajectory (the paper's trajectory
alignment: both heads share the schedule, so the trajectory density is a product of
Gaussians with the same variances): draft i is accepted with probability
min(1, p_target(traj_i) / p_draft(traj_i)), left to right. After the first rejection the
recovered token is drawn from norm(max(0, p_target - p_draft)) by acceptance-rejection:
propose a target trajectory y, keep it with probability max(0, 1 - p_draft(y) / p_target(y)),
at most ``max_tries`` proposals (the last is kept if all fail, the paper's bounded loop;
the only departure from the target distribution). When every draft is accepted the bonus
token is drawn by the target head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core import DecodeSettings
from ..mar import sample_token, trajectory_logpdf
from . import METHODS, ImageStats, MethodSpec

__all__ = ["ContinuousSDConfig", "ContinuousSD"]


@dataclass(frozen=True)
class ContinuousSDConfig:
    """Attributes:
        gamma: tokens drafted per verification (>= 1; more = fewer target forwards when
            drafts are accepted, more wasted draft work when not).
        head_steps: DDPM steps of both heads (the reference's count; >= 1).
        max_tries: proposals of the residual acceptance-rejection loop (>= 1).

    Raises:
        ValueError: a field out of range.
    """

    gamma: int = 4
    head_steps: int = 25
    max_tries: int = 8

    def __post_init__(self) -> None:
        for name in ("gamma", "head_steps", "max_tries"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class ContinuousSD:
    """Draft with ``model.draft``, verify trajectories with the target (see the module docstring)."""

    def __init__(self, config: ContinuousSDConfig):
        self.config = config

    def _recover(self, model, draft, z_target, z_draft, settings, generator, stats) -> torch.Tensor:
        steps = self.config.head_steps
        for _ in range(self.config.max_tries):
            y, path, log_p = sample_token(model, z_target, settings, steps, generator, record=True)
            log_q = trajectory_logpdf(draft, z_draft, path, settings)
            stats.head_calls += steps
            stats.draft_head_calls += steps
            keep = 1.0 - math.exp(min(0.0, float(log_q[0] - log_p[0])))
            if float(torch.rand((), generator=generator, dtype=torch.float64)) < keep:
                break
        return y[0]

    def sample(
        self, model, label: int, settings: DecodeSettings, generator: torch.Generator
    ) -> tuple[torch.Tensor, ImageStats]:
        draft = model.draft
        if draft is None:
            raise ValueError(f"continuous_sd needs a draft model: {model.name} has none (load 'digits-mar')")
        steps, rows = self.config.head_steps, settings.rows
        width, length = len(rows.roles), model.seq_len
        ids_target = rows.class_ids(label, model.null_class)
        ids_draft = rows.class_ids(label, draft.null_class)
        target_cache, draft_cache, stats = model.new_cache(), draft.new_cache(), ImageStats()
        committed: list[torch.Tensor] = []
        placeholder = torch.zeros(model.token_dim, dtype=model.dtype)

        def seq(position: int) -> torch.Tensor:  # sequence position 0 = class slot, p + 1 = token p
            return placeholder if position == 0 else committed[position - 1]

        while len(committed) < length:
            n = len(committed)
            k = min(self.config.gamma, length - n - 1)
            pending = torch.stack([seq(p) for p in range(draft_cache.length, n + 1)])
            drafts, paths, z_draft, log_q = [], [], [], []
            for _ in range(k):
                z = draft.forward(pending.unsqueeze(0).expand(width, -1, -1), ids_draft, draft_cache)[:, -1:]
                x, path, lq = sample_token(draft, z, settings, steps, generator, record=True)
                drafts.append(x[0]), paths.append(path), z_draft.append(z), log_q.append(lq[0])
                pending = x
                stats.draft_forwards += 1
                stats.draft_head_calls += steps
            inputs = torch.stack([seq(n)] + drafts).unsqueeze(0).expand(width, -1, -1)
            z_target = model.forward(inputs, ids_target, target_cache)  # (R, k + 1, Z)
            stats.forwards += 1
            accepted = k
            if k:
                joint = [torch.cat([paths[j][s] for j in range(k)]) for s in range(steps + 1)]
                log_p = trajectory_logpdf(model, z_target[:, :k], joint, settings)
                stats.head_calls += steps
                for j in range(k):
                    ratio = math.exp(min(0.0, float(log_p[j] - log_q[j])))
                    if float(torch.rand((), generator=generator, dtype=torch.float64)) >= ratio:
                        accepted = j
                        break
            if accepted == k:
                nxt = sample_token(model, z_target[:, k:], settings, steps, generator)[0][0]
                stats.head_calls += steps
            else:
                nxt = self._recover(
                    model, draft, z_target[:, accepted : accepted + 1], z_draft[accepted], settings, generator, stats
                )
            committed += drafts[:accepted] + [nxt]
            target_cache.crop(n + accepted + 1)
            draft_cache.crop(min(draft_cache.length, n + accepted + 1))
            stats.drafted += k
            stats.accepted += accepted
            stats.accepted_per_forward.append(accepted + 1)
        stats.tokens = length
        return torch.stack(committed), stats


METHODS.register(
    "continuous_sd",
    MethodSpec(
        "continuous_sd",
        ContinuousSDConfig,
        ContinuousSD,
        ("continuous",),
        True,
        "Continuous Speculative Decoding, arXiv 2411.11925",
    ),
    key_type=ContinuousSDConfig,
)
