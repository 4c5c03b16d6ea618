"""The reach task, its expert, and the diffusion policy: dynamics, sampler, caches on it, loading."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import hasten.diffusion as hd
from hasten.diffusion import models
from hasten.diffusion.hooks import HookRegistry
from hasten.diffusion.methods.bac import save_schedule
from hasten.diffusion.models.reach_env import (
    MAX_STEP,
    MAX_STEPS,
    ReachEnv,
    ScriptedExpert,
    expert_demonstrations,
    sample_starts,
    segment_hits_disc,
)
from hasten.diffusion.models.reach_policy import (
    MODEL_NAME,
    SCHEDULE_FILE,
    WEIGHTS_FILE,
    ReachPolicy,
    cosine_alpha_bars,
    ddim_step,
    ddim_timesteps,
    load_reach_policy,
)

from .policy_toys import TINY, tiny_policy

# ----- the environment and the expert -----


def test_segments_hit_the_disc_along_their_length_not_only_at_the_end():
    start = np.array([[-1.0, 0.1], [-1.0, 0.4], [-0.5, 0.0], [0.29, 0.0]])
    end = np.array([[1.0, 0.1], [1.0, 0.4], [-0.4, 0.0], [0.5, 0.0]])
    assert segment_hits_disc(start, end).tolist() == [True, False, False, True]


def test_step_clips_moves_and_ends_episodes():
    env = ReachEnv()
    env.reset([0, 1, 2])
    env.state.position[:] = [[-0.4, 0.0], [0.5, 0.0], [0.3, 0.4]]
    env.state.goal[:] = [[0.8, 0.0], [0.52, 0.0], [0.8, 0.0]]
    env.step(np.array([[1.0, 0.0], [0.02, 0.0], [0.0, 0.05]]))
    assert env.state.collided.tolist() == [False, False, False]
    assert env.state.position[0] == pytest.approx([-0.4 + MAX_STEP, 0.0])  # clipped to MAX_STEP
    assert env.state.success.tolist() == [False, True, False]
    env.step(np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))  # episode 0 runs into the disc
    assert env.state.collided.tolist() == [True, False, False]
    assert env.state.position[0] == pytest.approx([-0.4 + MAX_STEP, 0.0])  # it stays where it was
    assert env.state.position[1] == pytest.approx([0.52, 0.0])  # finished episodes do not move
    assert env.running().tolist() == [False, False, True]
    assert env.state.steps.tolist() == [2, 1, 2]


def test_resets_are_deterministic_per_seed_and_in_range():
    start, goal = sample_starts(np.arange(200))
    again, _ = sample_starts(np.arange(100, 200))
    assert np.array_equal(start[100:], again)
    assert (start[:, 0] >= -0.9).all() and (start[:, 0] <= -0.7).all() and (np.abs(start[:, 1]) <= 0.15).all()
    assert (goal[:, 0] >= 0.7).all() and (goal[:, 0] <= 0.9).all() and (np.abs(goal[:, 1]) <= 0.15).all()


def test_expert_always_succeeds_and_uses_both_sides():
    seeds = np.arange(300)
    env = ReachEnv()
    obs = env.reset(seeds)
    expert = ScriptedExpert(seeds)
    for _ in range(MAX_STEPS):
        obs = env.step(expert.act(obs)[1])
    assert env.state.success.all() and not env.state.collided.any()
    assert 0.4 < (env.state.side == 1).mean() < 0.6 and ((env.state.side == 1) == (expert.side == 1)).all()


def test_demonstrations_are_zero_after_the_episode_ends():
    observations, labels, running = expert_demonstrations([7, 8])
    assert observations.shape == (2, MAX_STEPS, 4) and labels.shape == (2, MAX_STEPS, 2)
    assert not running[:, -1].any() and running[:, 0].all()
    assert (labels[~running] == 0).all() and (np.linalg.norm(labels[running], axis=-1) <= MAX_STEP).all()


# ----- the sampler -----


def test_ddim_schedule_and_an_exact_step():
    assert ddim_timesteps(100, 4) == [75, 50, 25, 0]
    alpha_bars = cosine_alpha_bars(100)
    assert alpha_bars.shape == (100,) and (alpha_bars.diff() < 0).all() and 0 < alpha_bars[-1] < alpha_bars[0] < 1
    x0, eps = torch.rand(3, 8, 2) * 2 - 1, torch.randn(3, 8, 2)
    ab = float(alpha_bars[40])
    noisy = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
    torch.testing.assert_close(ddim_step(noisy, eps, ab, 1.0), x0)  # the true noise lands on x0


def test_rollouts_are_deterministic_and_the_first_chunk_is_the_sampled_one():
    policy = tiny_policy()
    seeds = np.arange(4)
    first, second = policy.rollout(seeds), policy.rollout(seeds)
    assert np.array_equal(first.actions, second.actions) and np.array_equal(first.success, second.success)
    obs = ReachEnv().reset(seeds)
    assert np.array_equal(first.first_chunk, policy.sample_chunks(obs, policy.initial_noise(seeds, 0)))
    assert first.first_chunk.shape == (4, TINY.horizon, 2)
    assert not np.array_equal(policy.initial_noise(seeds, 0), policy.initial_noise(seeds, 1))


# ----- cache methods on the policy -----

ACTIVE = [
    hd.StaticCacheConfig(interval=2, warmup_steps=1),
    hd.DeltaDiTConfig(interval=2, switch_step=2),
    hd.FirstBlockCacheConfig(threshold=10.0, warmup_steps=1),
    hd.TaylorSeerConfig(interval=2, order=1, warmup_steps=2),
    hd.CGTaylorConfig(threshold=10.0, warmup_steps=2),
    hd.BACConfig(((0, 2), (0, 1, 3), (0, 4), (0, 3)), TINY.sample_steps),
]


@pytest.mark.parametrize("config", ACTIVE, ids=lambda c: type(c).__name__)
def test_every_cache_method_runs_on_the_policy_and_comes_off_cleanly(config):
    policy = tiny_policy()
    seeds = np.arange(3)
    reference = policy.rollout(seeds)
    handle = hd.enable(policy.denoiser, config)  # the built-in spec of ReachDenoiser
    cached = policy.rollout(seeds)
    summary = handle.summary()
    hd.disable(policy.denoiser)
    assert summary.skipped_fraction > 0 and summary.runs == summary.calls // TINY.sample_steps
    assert not np.array_equal(cached.first_chunk, reference.first_chunk)
    assert all(HookRegistry.find(m) is None for m in [policy.denoiser, *policy.denoiser.blocks])
    assert np.array_equal(policy.rollout(seeds).actions, reference.actions)


def test_bac_updating_every_block_every_step_equals_uncached_exactly():
    policy = tiny_policy()
    seeds = np.arange(5)
    reference = policy.rollout(seeds)
    handle = hd.enable(policy.denoiser, hd.BACConfig.every_step(2 * TINY.depth, TINY.sample_steps))
    cached = policy.rollout(seeds)
    assert np.array_equal(cached.actions, reference.actions)
    assert np.array_equal(cached.first_chunk, reference.first_chunk)
    assert handle.summary().totals.skipped == 0


# ----- loading -----


def write_tiny_weights(policy: ReachPolicy, folder):
    save_file({k: v.contiguous() for k, v in policy.denoiser.state_dict().items()}, str(folder / WEIGHTS_FILE))
    manifest = {
        "name": MODEL_NAME,
        "architecture": "ReachDenoiser",
        "config": policy.config.to_dict(),
        "files": {WEIGHTS_FILE: {}},
        "training": {"command": "python training/train_policy.py", "seconds": 0.0},
    }
    models.write_manifest(manifest, folder)


def test_loader_round_trip_with_schedule(tmp_path):
    policy = tiny_policy(seed=3)
    write_tiny_weights(policy, tmp_path)
    loaded = load_reach_policy(tmp_path)
    assert "bac_config" not in loaded.extra
    seeds = np.arange(3)
    assert np.array_equal(loaded.extra["policy"].rollout(seeds).actions, policy.rollout(seeds).actions)
    schedule = hd.BACConfig(((0, 2), (0,), (0, 1), (0, 3)), TINY.sample_steps)
    save_schedule(schedule, tmp_path / SCHEDULE_FILE)
    assert load_reach_policy(tmp_path).extra["bac_config"] == schedule


def test_loader_refuses_a_corrupted_weight_file(tmp_path):
    write_tiny_weights(tiny_policy(), tmp_path)
    data = bytearray((tmp_path / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(models.WeightsError, match="sha256"):
        load_reach_policy(tmp_path)


def test_the_shipped_policy_loads_with_its_schedule():
    loaded = models.load("reach-policy")
    policy = loaded.extra["policy"]
    assert isinstance(policy, ReachPolicy) and loaded.module is policy.denoiser
    config = loaded.extra["bac_config"]
    assert len(config.update_steps) == len(policy.denoiser.blocks) and config.num_steps == policy.config.sample_steps
    manifest = json.loads((models.WEIGHTS_DIR / f"{MODEL_NAME}.json").read_text())
    assert manifest["training"]["seconds"] <= 30 * 60
