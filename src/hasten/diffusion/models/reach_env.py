"""reach: a 2-D point-robot task with two ways around an obstacle, and its scripted expert.

The robot starts on the left (x near -0.8), the goal is on the right (x near +0.8), and a
disc of radius :data:`OBSTACLE_RADIUS` sits at the origin between them. The disc can be
passed above (y > 0) or below (y < 0); the scripted expert picks a side at random in each
episode, so demonstrations are **multimodal**: from the same start both an upward and a
downward path are correct, and a policy that averages them drives into the obstacle.

Units: positions in world units (the workspace is ``[-1, 1]^2``); an action is the
position change of one control step, at most :data:`MAX_STEP` long (longer actions are
scaled down to that length). Everything is numpy float64 and vectorised over E episodes;
given the episode seeds, resets, the expert and all dynamics are deterministic.

Observation ``(E, 4)``: ``(x, y, goal_x, goal_y)``. An episode succeeds when the robot is
within :data:`GOAL_RADIUS` of the goal within :data:`MAX_STEPS` steps without ever touching
the obstacle (the segment moved along in a step counts, not just its end point); it fails
at its first collision, after which the robot stays put.

Dims: E episodes, T control steps, A = 2 action dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBSTACLE_RADIUS = 0.3  # world units, disc centred at the origin
MAX_STEP = 0.08  # world units per control step (action length limit)
GOAL_RADIUS = 0.05  # world units
MAX_STEPS = 48  # control steps per episode
OBS_DIM = 4
ACTION_DIM = 2


def episode_rng(seed: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one episode (``stream`` separates independent uses of a seed)."""
    return np.random.default_rng([seed, stream])


def sample_starts(seeds: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and goals ``(E, 2)`` float64 for the given episode seeds.

    Starts are uniform in ``[-0.9, -0.7] x [-0.15, 0.15]``, goals in ``[0.7, 0.9] x [-0.15, 0.15]``.
    """
    draws = np.stack([episode_rng(int(s)).uniform(-1.0, 1.0, size=4) for s in seeds])
    start = np.stack([-0.8 + 0.1 * draws[:, 0], 0.15 * draws[:, 1]], axis=1)
    goal = np.stack([0.8 + 0.1 * draws[:, 2], 0.15 * draws[:, 3]], axis=1)
    return start, goal


def clip_actions(actions: np.ndarray) -> np.ndarray:
    """Scale actions ``(E, 2)`` longer than :data:`MAX_STEP` down to that length (direction kept)."""
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    return actions * np.minimum(1.0, MAX_STEP / np.maximum(norm, 1e-12))


def segment_hits_disc(start: np.ndarray, end: np.ndarray, radius: float = OBSTACLE_RADIUS) -> np.ndarray:
    """Whether the segments ``start -> end`` (each ``(E, 2)``) come closer than ``radius`` to the origin.

    Example: ``(-1, 0.1) -> (1, 0.1)`` hits a disc of radius 0.3; ``(-1, 0.4) -> (1, 0.4)`` does not.
    """
    direction = end - start
    length2 = np.maximum((direction**2).sum(-1), 1e-18)
    along = np.clip(-(start * direction).sum(-1) / length2, 0.0, 1.0)
    closest = start + along[:, None] * direction
    return np.linalg.norm(closest, axis=-1) < radius


@dataclass
class ReachState:
    """The state of E episodes (owned by :class:`ReachEnv`; ``reset`` replaces it)."""

    position: np.ndarray  # (E, 2)
    goal: np.ndarray  # (E, 2)
    steps: np.ndarray  # (E,) int64 control steps taken
    success: np.ndarray  # (E,) bool, reached the goal
    collided: np.ndarray  # (E,) bool
    side: np.ndarray  # (E,) int64: +1 passed above the obstacle, -1 below, 0 not yet past x = 0


class ReachEnv:
    """E reach episodes stepped together.

    ``reset(seeds)`` starts one episode per seed; ``step(actions)`` moves every episode that
    is still running (not succeeded, not collided, fewer than :data:`MAX_STEPS` steps) and
    leaves finished ones where they are.
    """

    def __init__(self) -> None:
        self.state: ReachState | None = None

    def reset(self, seeds: np.ndarray | list[int]) -> np.ndarray:
        """Start one episode per seed; returns the observations ``(E, 4)`` float64."""
        start, goal = sample_starts(seeds)
        n = len(start)
        self.state = ReachState(
            start, goal, np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int64)
        )
        return self.observe()

    def observe(self) -> np.ndarray:
        """Observations ``(E, 4)``: position then goal, world units."""
        state = self._require_state()
        return np.concatenate([state.position, state.goal], axis=1)

    def running(self) -> np.ndarray:
        """``(E,)`` bool: episodes that still move."""
        state = self._require_state()
        return ~state.success & ~state.collided & (state.steps < MAX_STEPS)

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply one action per episode ``(E, 2)`` (world units, clipped); returns observations ``(E, 4)``.

        Raises:
            ValueError: ``actions`` is not ``(E, 2)``.
        """
        state = self._require_state()
        if actions.shape != state.position.shape:
            raise ValueError(f"actions must be {state.position.shape}, got {actions.shape}")
        moving = self.running()
        new_position = state.position + clip_actions(actions)
        hit = moving & segment_hits_disc(state.position, new_position)
        advance = moving & ~hit
        crossed = advance & (state.side == 0) & (state.position[:, 0] < 0) & (new_position[:, 0] >= 0)
        state.side[crossed] = np.where(new_position[crossed, 1] >= 0, 1, -1)
        state.position[advance] = new_position[advance]
        state.collided |= hit
        state.steps[moving] += 1
        state.success |= advance & (np.linalg.norm(state.position - state.goal, axis=-1) < GOAL_RADIUS)
        return self.observe()

    def _require_state(self) -> ReachState:
        if self.state is None:
            raise RuntimeError("call reset(seeds) first")
        return self.state


class ScriptedExpert:
    """The demonstrator: go around the obstacle on a side drawn per episode, then to the goal.

    Each episode draws (from its seed) a side (above/below, probability 1/2 each), a via
    point ``(u, side * (OBSTACLE_RADIUS + margin))`` with ``u ~ U(-0.05, 0.05)`` and
    ``margin ~ U(0.18, 0.25)``, and a speed ``~ U(0.05, 0.07)`` world units per step. It heads
    for the via point until within 0.04 of it (or past it in x), then for the goal,
    slowing to land on it. :meth:`act` adds Gaussian noise (std ``noise``) to the executed
    action and returns the clean intended action as the label, so demonstrations visit
    slightly perturbed states with corrective labels.
    """

    def __init__(self, seeds: np.ndarray | list[int], noise: float = 0.01) -> None:
        draws = np.stack([episode_rng(int(s), 1).uniform(0.0, 1.0, size=4) for s in seeds])
        self.side = np.where(draws[:, 0] < 0.5, 1, -1)
        self.via = np.stack([-0.05 + 0.1 * draws[:, 1], self.side * (OBSTACLE_RADIUS + 0.18 + 0.07 * draws[:, 2])], 1)
        self.speed = 0.05 + 0.02 * draws[:, 3]
        self.passed_via = np.zeros(len(self.side), bool)
        self.noise = noise
        self._rngs = [episode_rng(int(s), 2) for s in seeds]

    def act(self, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Intended (label) and executed (noisy) actions ``(E, 2)`` for observations ``(E, 4)``."""
        position, goal = observation[:, :2], observation[:, 2:]
        near_via = np.linalg.norm(self.via - position, axis=-1) < 0.04
        self.passed_via |= near_via | (position[:, 0] > self.via[:, 0])
        target = np.where(self.passed_via[:, None], goal, self.via)
        offset = target - position
        distance = np.linalg.norm(offset, axis=-1, keepdims=True)
        length = np.minimum(self.speed[:, None], distance)
        intended = offset / np.maximum(distance, 1e-12) * length
        noise = np.stack([rng.normal(0.0, self.noise, size=2) for rng in self._rngs])
        return intended, intended + noise


def expert_demonstrations(
    seeds: np.ndarray | list[int], noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll the scripted expert out on the given episode seeds.

    Returns:
        observations ``(E, T, 4)``, intended actions ``(E, T, 2)`` (zero after the episode
        ended) and ``(E, T)`` bool, whether the episode was still running at each step;
        all float64 except the mask, T = :data:`MAX_STEPS`.
    """
    env = ReachEnv()
    observation = env.reset(seeds)
    expert = ScriptedExpert(seeds, noise)
    e = len(observation)
    observations = np.zeros((e, MAX_STEPS, OBS_DIM))
    labels = np.zeros((e, MAX_STEPS, ACTION_DIM))
    running = np.zeros((e, MAX_STEPS), bool)
    for t in range(MAX_STEPS):
        running[:, t] = env.running()
        intended, executed = expert.act(observation)
        observations[:, t] = observation
        labels[:, t] = np.where(running[:, t, None], intended, 0.0)
        observation = env.step(executed)
    return observations, labels, running
