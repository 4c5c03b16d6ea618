"""bac: Block-wise Adaptive Caching, a per-block cache refresh schedule found offline.

"Block-wise Adaptive Caching for Accelerating Diffusion Policy" (Ji et al., arXiv
2506.13456). Every block gets its own set of cache refresh steps ("update steps"); on the
other steps it reuses the residual stored at its last refresh. The schedule is computed
once, before inference, from features recorded with caching off on a few calibration runs:

1. **Adaptive Caching Scheduler** (:func:`schedule_updates`): for one block, pick
   ``num_updates`` refresh steps among the S denoising steps (step 0 always one) that
   maximise the summed similarity between the feature reused at each skipped step and the
   true feature there::

       maximise  sum over skipped steps t of  similarity[last refresh before t, t]

   solved exactly by dynamic programming over "the m-th refresh is at step j"
   (O(num_updates * S^2)); :func:`schedule_updates_reference` is the brute force.
   Similarity here is the mean cosine similarity of the block's residual at two steps,
   averaged over calibration samples (the paper's choice: cosine).
2. **Bubbling Union** (:func:`bubbling_union`): reusing an upstream block feeds its error
   into the next FFN block's refresh, which lacks a normalisation to absorb it ("error
   surge"). So the ``num_upstream`` blocks with the largest caching error (the mean L1
   distance between their features at two steps, the paper's l_j) also refresh at every
   step at which any FFN block downstream of them refreshes:
   ``C(u) <- C(u) | union of C(v) over FFN blocks v after u``.

Glossary: **update step** = cache refresh step of one block; **upstream block** = a block
called before another in the same denoiser call; **budget** = ``num_updates`` refreshes
per block before the union (the union only adds refreshes).

Dims: S denoising steps, N blocks, B calibration samples per run, F feature size.
Schedules are lists of step *indices* (0 = the first denoiser call of a run), not timesteps.

This module holds the config, the policy and schedule files; the offline calibration
(the scheduler, the union, :func:`calibrate`, :func:`build_schedule`) is in
:mod:`.bac_calibration`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hasten.diffusion.features import Feature
from hasten.diffusion.policy import Action, CachePolicy, FeatureStore, register_policy

SCHEDULE_FORMAT = "hasten.diffusion.bac/1"

# ----- the config -----


@dataclass(frozen=True)
class BACConfig:
    """A block-wise cache refresh schedule.

    Attributes:
        update_steps: for each block in call order, its cache refresh step indices (sorted,
            distinct, each in ``[0, num_steps)``, starting with 0). Fewer steps = faster,
            lower fidelity; all of ``range(num_steps)`` = that block is never reused.
        num_steps: S, the denoising steps the schedule was made for (>= 1). Calls at step
            indices ``>= num_steps`` compute every block.

    Build one with :func:`build_schedule` from :func:`calibrate` statistics, or load one
    with :func:`load_schedule`.
    """

    update_steps: tuple[tuple[int, ...], ...]
    num_steps: int

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not self.update_steps:
            raise ValueError("update_steps needs one entry per block")
        for block, steps in enumerate(self.update_steps):
            if not steps or steps[0] != 0:
                raise ValueError(f"block {block}: update steps must start with step 0, got {steps}")
            if any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] >= self.num_steps:
                raise ValueError(f"block {block}: update steps must increase within [0, {self.num_steps}), got {steps}")

    @classmethod
    def every_step(cls, num_blocks: int, num_steps: int) -> BACConfig:
        """The schedule that refreshes every block at every step (reuses nothing)."""
        return cls(tuple(tuple(range(num_steps)) for _ in range(num_blocks)), num_steps)

    @property
    def skipped_fraction(self) -> float:
        """Fraction (0-1) of block evaluations of an S-step run that are reused."""
        computed = sum(len(steps) for steps in self.update_steps)
        return 1.0 - computed / (len(self.update_steps) * self.num_steps)


# ----- the policy -----


class BlockwiseAdaptiveCache(CachePolicy):
    """Compute each block at its own update steps; reuse its stored residual at the others."""

    name = "bac"

    def __init__(self, config: BACConfig, num_blocks: int) -> None:
        super().__init__(num_blocks)
        if len(config.update_steps) != num_blocks:
            raise ValueError(f"the schedule has {len(config.update_steps)} blocks, the denoiser {num_blocks}")
        self.num_steps = config.num_steps
        self.refresh = tuple(frozenset(steps) for steps in config.update_steps)

    def new_state(self) -> FeatureStore:
        return FeatureStore()

    def observes(self, block: int) -> bool:
        return len(self.refresh[block]) < self.num_steps

    def decide(self, state: FeatureStore, step: int, block: int) -> Action:
        if step >= self.num_steps or step in self.refresh[block]:
            return Action.COMPUTE
        return Action.REUSE

    def on_compute(self, state: FeatureStore, step: int, block: int, feature: Feature) -> None:
        state.features[block] = feature

    def approximate(self, state: FeatureStore, step: int, block: int) -> Feature | None:
        return state.features.get(block)


register_policy(BACConfig, BlockwiseAdaptiveCache)


# ----- schedules on disk -----


def save_schedule(config: BACConfig, path: str | Path, **metadata: Any) -> Path:
    """Write ``config`` as JSON (``format``, ``num_steps``, ``update_steps``, ``metadata``).

    ``metadata`` (JSON-serialisable: budget, block names, calibration seeds...) is stored
    as is and ignored by :func:`load_schedule`.
    """
    path = Path(path)
    document = {
        "format": SCHEDULE_FORMAT,
        "method": "bac",
        "paper": "Block-wise Adaptive Caching for Accelerating Diffusion Policy, arXiv 2506.13456",
        "num_steps": config.num_steps,
        "update_steps": [list(steps) for steps in config.update_steps],
        "metadata": metadata,
    }
    text = json.dumps(document, indent=1)
    text = re.sub(r"\[[\d,\s]*\]", lambda m: json.dumps(json.loads(m.group(0))), text)  # one line per block
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_schedule(path: str | Path) -> BACConfig:
    """Read a schedule written by :func:`save_schedule`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a BAC schedule file, or an invalid schedule.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != SCHEDULE_FORMAT:
        raise ValueError(f"{path}: not a {SCHEDULE_FORMAT} schedule")
    steps = tuple(tuple(int(s) for s in block) for block in document["update_steps"])
    return BACConfig(steps, int(document["num_steps"]))
