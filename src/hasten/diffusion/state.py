"""Per-run, per-branch cache state and where sampling runs start.

Words:

* **lane**: the stream of denoiser calls whose features may be reused for one another:
  one CFG branch of one sampling run. A batched CFG call (cond and uncond stacked in the
  batch, either order) is one lane whose stored tensors keep each sample at its own batch
  index; separate cond/uncond calls are separate lanes.
* **run**: one sampling loop over the timesteps. Each lane restarts (drops its features,
  step index back to 0) at the first call of a new run.

A call's lane is, in order of precedence: the branch the user named with
:meth:`CacheHandle.branch`, the name a diffusers pipeline passed to ``cache_context``, or
the call's ordinal among consecutive calls with the same timestep ("call0", "call1", ...:
a hand-written loop that calls cond then uncond at each timestep gets two lanes).

At most :data:`MAX_LANES` lanes are kept; the least recently used one is dropped beyond
that (it simply restarts if it is called again). This bounds memory when every call of a
run shares one timestep (1-step samplers called repeatedly get a new ordinal lane per call).

A lane restarts when: its first call; the call's input shapes/dtypes/devices differ from
its previous call (batch size, resolution, prompt length); a block saw different input
shapes than at its previous call (the lane was marked ``dirty``); or, unless the user
declared the run with :meth:`CacheHandle.run`, the step index passed to ``cache_context``
did not increase, or the timestep did not move on in the direction the run's first two
calls set (decreasing for diffusion and most flow samplers, increasing for 0 -> 1 flow loops).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hasten.diffusion.features import Layout
from hasten.diffusion.policy import PolicyState

Signature = tuple[tuple[Any, ...], ...]

MAX_LANES = 8


def tensor_signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Signature:
    """Shapes, dtypes and devices of the tensors among a call's top-level arguments.

    Tensors inside top-level tuples/lists count too (e.g. rotary embeddings); dicts and
    other values do not. Two calls with equal signatures can share cached features.
    """
    entries: list[tuple[Any, ...]] = []
    items = [(i, a) for i, a in enumerate(args)] + sorted(kwargs.items())
    for key, value in items:
        values = value if isinstance(value, (tuple, list)) else (value,)
        for j, v in enumerate(values):
            if isinstance(v, torch.Tensor):
                entries.append((key, j, tuple(v.shape), v.dtype, v.device))
    return tuple(entries)


def timestep_value(value: Any) -> float | None:
    """A denoiser call's timestep as one number (the maximum over a tensor), or None.

    Example: ``tensor([981, 981])`` gives 981.0; ``0.5`` gives 0.5; ``None`` gives None.
    """
    if isinstance(value, torch.Tensor):
        return float(value.detach().max()) if value.numel() else None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def timestep_continues(last: float | None, direction: int, timestep: float | None) -> bool:
    """Whether ``timestep`` carries on a run whose last timestep was ``last``.

    ``direction`` is -1 (timesteps decrease), +1 (increase) or 0 (not known yet: any
    change continues the run). Without a timestep there is no evidence of a new run.

    Examples: ``(500., -1, 480.)`` -> True; ``(20., -1, 999.)`` -> False;
    ``(999., 0, 999.)`` -> False (the same timestep again starts over).
    """
    if last is None or timestep is None:
        return True
    if direction == 0:
        return timestep != last
    return (timestep - last) * direction > 0


@dataclass
class BlockRecord:
    """What a lane remembers about a block from its last computation.

    Attributes:
        layout: the structure of the block's output (to rebuild it from a feature).
        has_residual: whether every tensor of the output is a same-shape update of a
            named input, i.e. the block has a residual feature and can be bypassed.
    """

    layout: Layout
    has_residual: bool


class Lane:
    """State of one lane: the policy's per-lane state plus run bookkeeping. ``restart()`` starts a new run."""

    def __init__(self, key: str, policy_state: PolicyState) -> None:
        self.key = key
        self.policy_state = policy_state
        self.step = -1  # denoising step index of the current call; -1 before the first call
        self.last_timestep: float | None = None
        self.direction = 0
        self.last_step_index: int | None = None
        self.signature: Signature = ()
        self.block_signatures: dict[int, Signature] = {}
        self.records: dict[int, BlockRecord] = {}
        self.dirty = False

    def restart(self) -> None:
        """Forget every feature and shape; the current call becomes step 0 of a new run."""
        self.policy_state.reset()
        self.step = 0
        self.direction = 0
        self.last_timestep = None
        self.last_step_index = None
        self.block_signatures.clear()
        self.records.clear()
        self.dirty = False


class RunTracker:
    """Assigns each denoiser call to a lane and detects run starts. ``reset()`` forgets all lanes."""

    def __init__(self, new_policy_state: Callable[[], PolicyState]) -> None:
        self._new_policy_state = new_policy_state
        self._lanes: dict[str, Lane] = {}
        self._previous_timestep: float | None = None
        self._ordinal = 0
        self.explicit_run = False  # True inside CacheHandle.run(): only shape changes restart lanes

    def reset(self) -> None:
        for lane in self._lanes.values():
            lane.policy_state.reset()
        self._lanes.clear()
        self._previous_timestep = None
        self._ordinal = 0

    def lanes(self) -> tuple[Lane, ...]:
        return tuple(self._lanes.values())

    def begin_call(
        self, branch: str | None, timestep: float | None, step_index: int | None, signature: Signature
    ) -> Lane:
        """The lane for a denoiser call, restarted if this call starts a new run.

        Args:
            branch: a user- or pipeline-given branch name, or None to use the call ordinal.
            timestep: the call's timestep value (not the step index), or None.
            step_index: the step index a pipeline passed to ``cache_context``, or None.
            signature: :func:`tensor_signature` of the call's inputs.
        """
        key = branch if branch is not None else self._ordinal_key(timestep)
        lane = self._lanes.pop(key, None)
        if lane is None:
            lane = Lane(key, self._new_policy_state())
        self._lanes[key] = lane  # most recently used last
        while len(self._lanes) > MAX_LANES:
            self._lanes.pop(next(iter(self._lanes))).policy_state.reset()
        if self._starts_run(lane, timestep, step_index, signature):
            lane.restart()
        else:
            lane.step += 1
            if lane.direction == 0 and lane.last_timestep is not None and timestep is not None:
                lane.direction = 1 if timestep > lane.last_timestep else -1
        lane.last_timestep = timestep if timestep is not None else lane.last_timestep
        lane.last_step_index = step_index
        lane.signature = signature
        return lane

    def _ordinal_key(self, timestep: float | None) -> str:
        same = timestep is not None and timestep == self._previous_timestep
        self._ordinal = self._ordinal + 1 if same else 0
        self._previous_timestep = timestep
        return f"call{self._ordinal}"

    def _starts_run(self, lane: Lane, timestep: float | None, step_index: int | None, signature: Signature) -> bool:
        if lane.step < 0 or lane.dirty or signature != lane.signature:
            return True
        if self.explicit_run:
            return False
        if step_index is not None and lane.last_step_index is not None:
            return step_index <= lane.last_step_index
        return not timestep_continues(lane.last_timestep, lane.direction, timestep)
