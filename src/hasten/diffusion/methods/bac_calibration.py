"""Offline calibration of BAC (Block-wise Adaptive Caching, arXiv 2506.13456): from
features recorded with caching off to a per-block cache refresh schedule
(:class:`~hasten.diffusion.methods.bac.BACConfig`).

Pure parts first (the Adaptive Caching Scheduler, :func:`schedule_updates`, with its
brute-force reference; the Bubbling Union, :func:`bubbling_union`), then the recording
(:func:`calibrate`) and the two put together (:func:`build_schedule`). See
:mod:`hasten.diffusion.methods.bac` for the method and its glossary.

Dims: S denoising steps, N blocks, B calibration samples per run, F feature size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hasten.diffusion.blocks import DenoiserSpec, builtin_spec, resolve_blocks
from hasten.diffusion.cache import handle_of
from hasten.diffusion.features import output_feature, residual_feature, residual_inputs
from hasten.diffusion.methods.bac import BACConfig

__all__ = [
    "reuse_gains",
    "schedule_objective",
    "schedule_updates",
    "schedule_updates_reference",
    "bubbling_union",
    "BlockStatistics",
    "calibrate",
    "build_schedule",
]


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
