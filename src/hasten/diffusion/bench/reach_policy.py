"""The ``reach-policy`` suite of ``hasten bench-diffusion``: block caches on a diffusion policy.

One run = E closed-loop episodes of the reach task (:mod:`hasten.diffusion.models.reach_env`)
driven by the trained transformer diffusion policy (:mod:`hasten.diffusion.models.reach_policy`),
all E episodes batched into each denoiser call, with a cache method enabled on the
denoiser. Episode seeds are ``seed * 1_000_000 + i`` (i < E), so ``seed=0`` is episodes
0..E-1; the environment and the initial noise of every replan come from the episode
seed alone, so every method starts from the same noise.

What is measured:

* ``seconds``: wall time of the closed-loop rollouts (all replans, environment included).
* ``success_rate`` (0-1): closed-loop success of the E episodes; ``fidelity(ref, ref)``
  gives the uncached value.
* ``action_mse``: open-loop fidelity. For each episode, the scripted expert's states at
  control steps 0, 8, 16 and 24 are a **fixed set of observations** (the same for every
  method); an action chunk is sampled at each with the noise the closed loop would use
  at that replan, and ``action_mse`` is the mean squared difference from the uncached
  chunks, in normalised action units (action / ``MAX_STEP``, range [-1, 1]). Closed-loop
  trajectories are not compared: once two methods take different actions, their
  observations differ.
* ``above_fraction``: share of successful episodes that passed above the obstacle (the
  two modes of the demonstrations; about 0.5 when both are used).
* ``skipped_fraction``: from the cache handle's summary, over the closed-loop rollouts.

Settings: ``bac`` at several update budgets (schedules calibrated on 32 episodes with
seeds 50000.., disjoint from the measured ones), ``static``, ``first_block`` (thresholds
at the P50/P75/P95 of a threshold-0 probe on the calibration episodes), ``taylorseer``.

Output layout, float32 ``(E, 6 + 4*H*A + T*A)`` per run (see :func:`pack`): success,
side (+1 above, -1 below, 0 never past x = 0), start (x, y), goal (x, y), the 4 open-loop
chunks ``(4, H, A)`` and the executed actions ``(T, A)`` (world units).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hasten.diffusion as hd
from hasten.diffusion.bench.registry import register_suite
from hasten.diffusion.bench.suite import UNCACHED, Setting, SuiteOutput
from hasten.diffusion.methods.bac_calibration import BlockStatistics, build_schedule, calibrate
from hasten.diffusion.models.reach_env import ACTION_DIM, MAX_STEP, MAX_STEPS, expert_demonstrations, sample_starts
from hasten.diffusion.models.reach_policy import ReachPolicy

OPEN_LOOP_STEPS = (0, 8, 16, 24)  # control steps of the expert trajectory used as fixed observations
CALIBRATION_SEEDS = np.arange(32) + 50_000
EPISODES, QUICK_EPISODES = 100, 20
SEED_STRIDE = 1_000_000
# BAC settings: (update budget as a fraction of the denoising steps, bubbling-union blocks)
BAC_BUDGETS = ((0.2, 2), (0.25, 2), (1 / 3, 2), (0.25, 0))
QUICK_BAC_BUDGETS = ((0.25, 2),)
DEFAULT_BAC = (10, 2)  # (updates per block, bubbling-union blocks) of the shipped schedule, for 50 steps


@dataclass(frozen=True)
class PolicyRun:
    """One run's results, unpacked (see :func:`pack` for the array layout).

    Attributes:
        success: ``(E,)`` bool. side: ``(E,)`` int (+1 above, -1 below, 0 not past x = 0).
        start, goal: ``(E, 2)`` world units. chunks: ``(E, 4, H, A)`` open-loop chunks, world units.
        actions: ``(E, T, A)`` executed actions, world units.
    """

    success: np.ndarray
    side: np.ndarray
    start: np.ndarray
    goal: np.ndarray
    chunks: np.ndarray
    actions: np.ndarray


def pack(run: PolicyRun) -> np.ndarray:
    """A :class:`PolicyRun` as one float32 array ``(E, 6 + 4*H*A + T*A)``."""
    e = len(run.success)
    columns = [
        run.success[:, None],
        run.side[:, None],
        run.start,
        run.goal,
        run.chunks.reshape(e, -1),
        run.actions.reshape(e, -1),
    ]
    return np.concatenate([np.asarray(c, dtype=np.float32) for c in columns], axis=1)


def unpack(output: np.ndarray, horizon: int) -> PolicyRun:
    """Inverse of :func:`pack` for chunks of ``horizon`` actions."""
    e, chunk_size = len(output), len(OPEN_LOOP_STEPS) * horizon * ACTION_DIM
    chunks = output[:, 6 : 6 + chunk_size].reshape(e, len(OPEN_LOOP_STEPS), horizon, ACTION_DIM)
    actions = output[:, 6 + chunk_size :].reshape(e, MAX_STEPS, ACTION_DIM)
    return PolicyRun(output[:, 0] > 0.5, output[:, 1].astype(np.int64), output[:, 2:4], output[:, 4:6], chunks, actions)


def open_loop_chunks(policy: ReachPolicy, seeds: np.ndarray) -> np.ndarray:
    """Chunks ``(E, 4, H, A)`` sampled at the expert's states at :data:`OPEN_LOOP_STEPS` of each episode."""
    observations, _, _ = expert_demonstrations(seeds)
    obs = np.concatenate([observations[:, t] for t in OPEN_LOOP_STEPS])
    replans = [t // policy.config.execute_steps for t in OPEN_LOOP_STEPS]
    noise = torch.cat([policy.initial_noise(seeds, r) for r in replans])
    chunks = policy.sample_chunks(obs, noise).reshape(len(OPEN_LOOP_STEPS), len(seeds), -1, ACTION_DIM)
    return chunks.transpose(1, 0, 2, 3)


class ReachPolicySuite:
    """The ``reach-policy`` suite (the :class:`~hasten.diffusion.bench.DiffusionSuite` protocol)."""

    name = "reach-policy"
    metric_names = ("success_rate", "action_mse", "above_fraction")
    pareto_metrics = ("success_rate",)
    higher_is_better = {"success_rate": True, "action_mse": False, "above_fraction": True}

    def __init__(
        self, policy: ReachPolicy, episodes: int = EPISODES, calibration_seeds: np.ndarray = CALIBRATION_SEEDS
    ) -> None:
        self.policy = policy
        self.episodes = episodes
        self.calibration_seeds = calibration_seeds
        self._statistics: BlockStatistics | None = None
        self._methods = {UNCACHED, "bac", "static", "first_block", "taylorseer"}

    def describe(self) -> str:
        c, params = self.policy.config, sum(p.numel() for p in self.policy.denoiser.parameters())
        return (
            f"reach-policy: transformer diffusion policy, {2 * c.depth} blocks ({c.depth} attention + {c.depth} FFN) "
            f"x width {c.width}, {params / 1e6:.2f}M params, DDIM {c.sample_steps} steps, chunk {c.horizon} "
            f"(execute {c.execute_steps}), {self.episodes} episodes per run batched, float32, "
            f"{torch.get_num_threads()} thread(s)"
        )

    # ----- settings -----

    def statistics(self) -> BlockStatistics:
        """BAC calibration statistics of the policy (computed once, on the calibration seeds)."""
        if self._statistics is None:
            seeds = self.calibration_seeds
            self._statistics = calibrate(
                self.policy.denoiser, lambda: self.policy.rollout(seeds), self.policy.config.sample_steps
            )
        return self._statistics

    def bac_config(self, budget: int, upstream: int) -> hd.BACConfig:
        """The BAC schedule with ``budget`` updates per block and ``upstream`` bubbling-union blocks."""
        return build_schedule(self.statistics(), budget, self.policy.denoiser.ffn_blocks(), upstream)

    def probe_percentiles(self, probe_blocks: int = 1) -> dict[int, float]:
        """Residual-diff percentiles of ``first_block`` at threshold 0 on the calibration episodes."""
        handle = hd.enable(self.policy.denoiser, hd.FirstBlockCacheConfig(threshold=0.0, probe_blocks=probe_blocks))
        try:
            self.policy.rollout(self.calibration_seeds)
            return handle.summary().percentiles()
        finally:
            hd.disable(self.policy.denoiser)

    def settings(self, quick: bool) -> list[Setting]:
        steps = self.policy.config.sample_steps
        fractions = QUICK_BAC_BUDGETS if quick else BAC_BUDGETS
        budgets = dict.fromkeys((max(1, round(f * steps)), n) for f, n in fractions)  # distinct, in order
        rows = [Setting("bac", f"budget={k}/{steps}, upstream={n}", self.bac_config(k, n)) for k, n in budgets]
        rows.append(Setting("static", "interval=3, warmup=1", hd.StaticCacheConfig(interval=3, warmup_steps=1)))
        if quick:
            return rows
        for interval in (2, 4):
            rows.append(Setting("static", f"interval={interval}, warmup=1", hd.StaticCacheConfig(interval, 1)))
        probe = self.probe_percentiles()
        for p in (50, 75, 95):
            config = hd.FirstBlockCacheConfig(threshold=round(probe[p], 4), probe_blocks=1)
            rows.append(Setting("first_block", f"threshold={config.threshold} (P{p})", config))
        for interval, order in ((2, 1), (3, 2)):
            config = hd.TaylorSeerConfig(interval=interval, order=order, warmup_steps=2)
            rows.append(Setting("taylorseer", f"interval={interval}, order={order}, warmup=2", config))
        return rows

    # ----- running -----

    def episode_seeds(self, seed: int) -> np.ndarray:
        return seed * SEED_STRIDE + np.arange(self.episodes)

    def run(self, method: str, config: Any, seed: int) -> SuiteOutput:
        """Closed-loop rollouts of E episodes plus the open-loop chunks, with ``config`` enabled.

        ``config`` is a hasten cache config, or None for :data:`UNCACHED`.

        Raises:
            KeyError: ``method`` is not offered by this suite.
        """
        if method not in self._methods:
            raise KeyError(f"reach-policy offers {sorted(self._methods)}, not {method!r}")
        seeds = self.episode_seeds(seed)
        handle = hd.enable(self.policy.denoiser, config) if config is not None else None
        try:
            start = time.perf_counter()
            rollout = self.policy.rollout(seeds)
            seconds = time.perf_counter() - start
            skipped = handle.summary().skipped_fraction if handle is not None else 0.0
            chunks = open_loop_chunks(self.policy, seeds)
        finally:
            if handle is not None:
                hd.disable(self.policy.denoiser)
        starts, goals = sample_starts(seeds)
        result = PolicyRun(rollout.success, rollout.side, starts, goals, chunks, rollout.actions)
        return SuiteOutput(pack(result), seconds, skipped, {"episodes": float(len(seeds))})

    def fidelity(self, reference: SuiteOutput, output: SuiteOutput) -> dict[str, float]:
        horizon = self.policy.config.horizon
        ref, out = unpack(reference.output, horizon), unpack(output.output, horizon)
        sides = out.side[out.success]
        return {
            "success_rate": float(out.success.mean()),
            "action_mse": float((((out.chunks - ref.chunks) / MAX_STEP) ** 2).mean()),
            "above_fraction": float((sides == 1).mean()) if len(sides) else 0.0,
        }

    def render(self, outputs: list[tuple[str, SuiteOutput]], path: Path) -> bool:
        """Trajectories of each output (green: success, red: failure) around the obstacle."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        from hasten.diffusion.models.reach_env import OBSTACLE_RADIUS, clip_actions

        fig, axes = plt.subplots(1, len(outputs), figsize=(3 * len(outputs), 3), squeeze=False)
        for ax, (title, output) in zip(axes[0], outputs):
            run = unpack(output.output, self.policy.config.horizon)
            steps = np.stack([clip_actions(run.actions[:, t].astype(np.float64)) for t in range(MAX_STEPS)], axis=1)
            paths = np.concatenate([run.start[:, None], run.start[:, None] + np.cumsum(steps, axis=1)], axis=1)
            for path_xy, ok in zip(paths, run.success):
                ax.plot(path_xy[:, 0], path_xy[:, 1], color="tab:green" if ok else "tab:red", lw=0.6, alpha=0.6)
            ax.add_patch(plt.Circle((0, 0), OBSTACLE_RADIUS, color="0.6"))
            ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xticks=[], yticks=[], title=title)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return True


def make_suite(quick: bool) -> ReachPolicySuite:
    """The suite on the shipped weights; ``quick`` runs :data:`QUICK_EPISODES` episodes instead of :data:`EPISODES`."""
    from hasten.diffusion import models

    policy = models.load("reach-policy").extra["policy"]
    return ReachPolicySuite(policy, QUICK_EPISODES if quick else EPISODES)


register_suite("reach-policy", make_suite)
