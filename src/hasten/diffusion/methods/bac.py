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
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hasten.diffusion.blocks import DenoiserSpec, builtin_spec, resolve_blocks
from hasten.diffusion.cache import handle_of
from hasten.diffusion.features import Feature, output_feature, residual_feature, residual_inputs
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


# ----- Adaptive Caching Scheduler (pure) -----


def reuse_gains(similarity: np.ndarray) -> np.ndarray:
    """``gains[i, j]``: summed similarity of reusing step i's feature at steps ``i+1 .. j-1``.

    ``similarity`` is ``(S, S)``; returns ``(S, S + 1)`` float64 (entries with ``j <= i`` are 0).
    Example: ``similarity = [[1, .9, .5], [.9, 1, .8], [.5, .8, 1]]`` gives
    ``gains[0, 3] = .9 + .5 = 1.4`` and ``gains[1, 3] = .8``.
    """
    s = len(similarity)
    prefix = np.concatenate([np.zeros((s, 1)), np.cumsum(similarity, axis=1)], axis=1)  # prefix[i, t] = sum_{u<t}
    j = np.arange(s + 1)[None, :]
    i = np.arange(s)[:, None]
    gains = prefix[i, np.maximum(j, i + 1)] - prefix[i, i + 1]
    return np.where(j > i, gains, 0.0)


def schedule_objective(similarity: np.ndarray, steps: Sequence[int]) -> float:
    """Summed similarity between the reused and the true feature over the skipped steps.

    ``similarity``: ``(S, S)``; ``steps``: the update steps (must contain 0).
    Example: S = 3, steps ``(0, 2)``: step 1 reuses step 0, objective ``similarity[0, 1]``.
    """
    refresh, last, total = set(steps), 0, 0.0
    for t in range(len(similarity)):
        if t in refresh:
            last = t
        else:
            total += float(similarity[last, t])
    return total


def _check_problem(similarity: np.ndarray, num_updates: int) -> np.ndarray:
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or not len(similarity):
        raise ValueError(f"similarity must be a non-empty square (S, S) matrix, got shape {similarity.shape}")
    if not 1 <= num_updates <= len(similarity):
        raise ValueError(f"num_updates must be in [1, S={len(similarity)}], got {num_updates}")
    return similarity


def schedule_updates(similarity: np.ndarray, num_updates: int) -> tuple[int, ...]:
    """BAC's Adaptive Caching Scheduler: the best ``num_updates`` update steps for one block.

    Args:
        similarity: ``(S, S)`` float, ``similarity[i, j]`` = how well the feature of step i
            stands in for the feature of step j (higher = better; cosine in BAC).
        num_updates: refreshes in the run, step 0 included (1..S).

    Returns:
        The sorted update steps, starting with 0, maximising :func:`schedule_objective`.

    Raises:
        ValueError: ``similarity`` is not square or ``num_updates`` is out of range.

    Example: ``similarity = [[1, .9, .1], [.9, 1, .2], [.1, .2, 1]]``, 2 updates: ``(0, 2)``
    (reuse step 0 at step 1, gain .9) beats ``(0, 1)`` (gain .2).
    """
    similarity = _check_problem(similarity, num_updates)
    s = len(similarity)
    gains = reuse_gains(similarity)
    best = np.full((num_updates, s), -np.inf)  # best[m, j]: m+1-th update at j, gains of steps < j
    parent = np.zeros((num_updates, s), dtype=np.int64)
    best[0, 0] = 0.0
    for m in range(1, num_updates):
        for j in range(m, s):
            candidates = best[m - 1, :j] + gains[:j, j]
            parent[m, j] = int(np.argmax(candidates))
            best[m, j] = candidates[parent[m, j]]
    last = int(np.argmax(best[-1] + gains[:, s]))
    steps = [last]
    for m in range(num_updates - 1, 0, -1):
        steps.append(int(parent[m, steps[-1]]))
    return tuple(sorted(steps))


def schedule_updates_reference(similarity: np.ndarray, num_updates: int) -> tuple[int, ...]:
    """Brute force over every set of update steps (the slow reference of :func:`schedule_updates`).

    Same arguments, result and errors; exponential in S, for tests on S <= ~12.
    """
    similarity = _check_problem(similarity, num_updates)
    candidates = ((0, *rest) for rest in itertools.combinations(range(1, len(similarity)), num_updates - 1))
    return max(candidates, key=lambda steps: schedule_objective(similarity, steps))


# ----- Bubbling Union (pure) -----


def bubbling_union(
    update_steps: Sequence[Sequence[int]], errors: Sequence[float], is_ffn: Sequence[bool], num_upstream: int
) -> tuple[tuple[int, ...], ...]:
    """BAC's Bubbling Union Algorithm: high-error blocks also refresh whenever a later FFN block does.

    Args:
        update_steps: each block's update steps, blocks in call order.
        errors: each block's caching error (larger = its reused feature drifts more; BAC's l_j).
        is_ffn: whether each block is a feed-forward block.
        num_upstream: n, how many blocks with the largest errors get the union (0 = none).
            More = closer to uncached, slower.

    Returns:
        The new update steps per block (sorted): for each of the n selected blocks u,
        ``C(u) | union of C(v) for FFN blocks v > u``; other blocks unchanged.

    Raises:
        ValueError: the three sequences differ in length or ``num_upstream`` is negative.

    Example: steps ``[(0,), (0, 2), (0,), (0, 3)]``, errors ``[5, 1, 4, 0]``, FFN blocks 1 and
    3, n = 1: block 0 (largest error) becomes ``(0, 2, 3)``; the rest stay.
    """
    if not len(update_steps) == len(errors) == len(is_ffn):
        raise ValueError(f"{len(update_steps)} schedules, {len(errors)} errors, {len(is_ffn)} FFN flags")
    if num_upstream < 0:
        raise ValueError(f"num_upstream must be >= 0, got {num_upstream}")
    order = sorted(range(len(errors)), key=lambda b: (-float(errors[b]), b))
    result = [tuple(sorted(steps)) for steps in update_steps]
    for u in order[:num_upstream]:
        downstream = [set(update_steps[v]) for v in range(u + 1, len(update_steps)) if is_ffn[v]]
        result[u] = tuple(sorted(set(update_steps[u]).union(*downstream)))
    return tuple(result)


# ----- calibration -----


@dataclass(frozen=True)
class BlockStatistics:
    """What calibration measured, per block.

    Attributes:
        similarity: ``(N, S, S)`` float64, mean cosine similarity of a block's residual
            at steps i and j over calibration samples.
        errors: ``(N,)`` float64, BAC's caching error l_j: mean over step pairs of the mean
            absolute difference between the block's residuals at the two steps.
        samples: calibration samples (runs x batch rows) averaged over.
    """

    similarity: np.ndarray
    errors: np.ndarray
    samples: int


class _RunAccumulator:
    """Collects one block's features over a run of S calls and folds each finished run in."""

    def __init__(self, num_steps: int) -> None:
        self.num_steps = num_steps
        self.pending: list[torch.Tensor] = []
        self.similarity = np.zeros((num_steps, num_steps))
        self.error = 0.0
        self.samples = 0

    def add(self, feature: torch.Tensor) -> None:
        self.pending.append(feature.detach().reshape(feature.shape[0], -1).double())
        if len(self.pending) == self.num_steps:
            x = torch.stack(self.pending, dim=1)  # (B, S, F)
            self.pending = []
            unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            self.similarity += torch.einsum("bif,bjf->ij", unit, unit).numpy()
            self.error += float(torch.cdist(x, x, p=1).sum()) / (x.shape[-1] * self.num_steps**2)
            self.samples += x.shape[0]


def calibrate(
    denoiser: torch.nn.Module, run: Callable[[], Any], num_steps: int, spec: DenoiserSpec | None = None
) -> BlockStatistics:
    """Record every block's residual at every step while ``run()`` samples, caching off.

    ``run`` must call the denoiser in whole runs of ``num_steps`` calls (e.g. a few
    closed-loop rollouts of a diffusion policy). Recording uses temporary forward hooks on
    the blocks, removed before returning (also on error). A block's feature is its residual
    (output - input, flattened per sample), or its output where it has no residual.

    Raises:
        ValueError: a hasten cache is enabled on ``denoiser``, no spec is known, or the
            calls were not a whole number of ``num_steps``-call runs.
    """
    if handle_of(denoiser) is not None:
        raise ValueError("disable the hasten cache before calibrating: BAC needs uncached features")
    spec = spec if spec is not None else builtin_spec(denoiser)
    if spec is None:
        raise ValueError(f"no built-in block metadata for {type(denoiser).__name__}; pass spec=")
    blocks = resolve_blocks(denoiser, spec)
    accumulators = [_RunAccumulator(num_steps) for _ in blocks]

    def recorder(index: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            block = blocks[index]
            sources = residual_inputs(output, block.named_inputs(args, kwargs), block.outputs)
            feature = residual_feature(output, sources) if sources is not None else output_feature(output)
            accumulators[index].add(torch.cat([t.reshape(t.shape[0], -1) for t in feature], dim=1))

        return hook

    handles = [b.module.register_forward_hook(recorder(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    if any(a.pending for a in accumulators) or not accumulators[0].samples:
        raise ValueError(f"calibration calls were not whole runs of {num_steps} denoiser calls")
    samples = accumulators[0].samples
    similarity = np.stack([a.similarity / a.samples for a in accumulators])
    errors = np.array([a.error / a.samples for a in accumulators])
    return BlockStatistics(similarity, errors, samples)


def build_schedule(
    statistics: BlockStatistics, num_updates: int, is_ffn: Sequence[bool], num_upstream: int
) -> BACConfig:
    """The BAC schedule: :func:`schedule_updates` per block, then :func:`bubbling_union`.

    Raises:
        ValueError: as those two functions.
    """
    steps = [schedule_updates(similarity, num_updates) for similarity in statistics.similarity]
    return BACConfig(bubbling_union(steps, statistics.errors, is_ffn, num_upstream), statistics.similarity.shape[-1])


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
