"""Searching skip sets for self-speculative drafting, and remembering good ones per model.

The search is the layer-set optimization of SWIFT (Xia et al., "SWIFT: On-the-Fly
Self-Speculative Decoding for LLM Inference Acceleration", arXiv 2410.06916): candidate
skip sets are scored by how well their drafts agree with the tokens committed so far, and
proposed alternately by random search and by Bayesian optimization. Here the surrogate is
a small Gaussian process over skip sets (binary vectors, exponential Hamming kernel) that
models the *acceptance* of a set; the acquisition is the expected speedup of the set at an
optimistic acceptance (posterior mean + ``beta`` standard deviations), so the search trades
acceptance against the known cost of the layers a set still runs.

:class:`SkipSetCache` keeps measured acceptances per model (in memory, optionally in a
JSON file the caller names) so the next request starts drafting with a good set at once.
Nothing in it can change output; it only changes which drafts are proposed.

Dims: D search units (a bit per unit), N observed sets, M candidate sets.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

__all__ = [
    "hamming_kernel",
    "gp_posterior",
    "SkipSetSearch",
    "SkipSetCache",
    "default_skip_cache_path",
    "resolve_skip_cache",
    "check_skip_cache",
]


def hamming_kernel(a: np.ndarray, b: np.ndarray, lengthscale: float, variance: float) -> np.ndarray:
    """Exponential Hamming kernel ``variance * exp(-hamming(x, y) / lengthscale)``.

    Args:
        a: (N, D) 0/1 array; b: (M, D) 0/1 array.

    Returns:
        (N, M) float64 covariances.

    Example: a [[1, 0]], b [[1, 0], [0, 1]], lengthscale 1, variance 1 -> [[1, e^-2]].
    """
    distance = np.abs(a[:, None, :].astype(np.float64) - b[None, :, :].astype(np.float64)).sum(-1)
    return variance * np.exp(-distance / lengthscale)


def gp_posterior(
    x: np.ndarray, y: np.ndarray, query: np.ndarray, lengthscale: float, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-process posterior mean and standard deviation at ``query``.

    A constant prior mean (the mean of ``y``) and a prior variance of ``max(var(y), 0.01)``.

    Args:
        x: (N, D) observed points; y: (N,) observed values (N >= 1).
        query: (M, D) points to predict.
        lengthscale: Hamming distance over which correlation falls by e.
        noise: observation noise variance.

    Returns:
        (mean (M,), std (M,)) float64.

    Example: one observation y=0.6 at x; at query x the mean is 0.6 and the std is below
    the prior's 0.1; far away the mean returns to 0.6 and the std to 0.1.
    """
    prior_mean = float(y.mean())
    variance = max(float(y.var()), 0.01)
    k_xx = hamming_kernel(x, x, lengthscale, variance) + noise * np.eye(len(x))
    k_qx = hamming_kernel(query, x, lengthscale, variance)
    chol = np.linalg.cholesky(k_xx)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y - prior_mean))
    mean = prior_mean + k_qx @ alpha
    v = np.linalg.solve(chol, k_qx.T)
    var = np.clip(variance - (v * v).sum(0), 1e-12, None)
    return mean, np.sqrt(var)


class SkipSetSearch:
    """Random search alternating with Gaussian-process Bayesian optimization over skip sets.

    Args:
        groups: the search units: each a frozenset of model units skipped together
            (single sublayers, or both sublayers of a layer).
        max_skip: most groups skipped in one set.
        objective: ``objective(skip_set, acceptance) -> expected speedup``.
        seed: seed of the search's own RNG (the search never touches torch's RNG).
        beta: exploration weight of the acquisition (standard deviations of optimism).
        pool: candidates scored by the acquisition per Bayesian step.

    Observations are averaged per skip set; :meth:`reset` forgets all of them.
    """

    def __init__(
        self,
        groups: list[frozenset[int]],
        max_skip: int,
        objective: Callable[[frozenset[int], float], float],
        seed: int = 0,
        beta: float = 1.0,
        pool: int = 64,
    ):
        if not groups or max_skip < 1:
            raise ValueError("nothing to search: no skippable units")
        self.groups, self.max_skip, self.objective = groups, min(max_skip, len(groups)), objective
        self.seed, self.beta, self.pool = seed, beta, pool
        self.reset()

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.totals: dict[tuple[int, ...], list[float]] = {}  # group bits -> [sum of acceptance, count]
        self.proposals = 0
        self._best: tuple[frozenset[int], float, float] | None = None  # best() until the next observe()

    def _skip_set(self, bits: tuple[int, ...]) -> frozenset[int]:
        return frozenset(u for bit, group in zip(bits, self.groups) if bit for u in group)

    def _bits(self, skip: frozenset[int]) -> tuple[int, ...]:
        return tuple(int(group <= skip) for group in self.groups)

    def covers(self, skip: frozenset[int]) -> bool:
        """Whether ``skip`` is a union of search units (so it can be observed exactly)."""
        return self._skip_set(self._bits(skip)) == skip

    def observe(self, skip: frozenset[int], acceptance: float, weight: float = 1.0) -> None:
        """Record a measured acceptance (fraction 0-1) of ``skip`` (weight = how many
        measurements it stands for)."""
        entry = self.totals.setdefault(self._bits(skip), [0.0, 0.0])
        entry[0] += acceptance * weight
        entry[1] += weight
        self._best = None

    def observed(self) -> list[tuple[frozenset[int], float, float]]:
        """(skip set, mean acceptance, weight) of every observed set."""
        return [(self._skip_set(b), s / n, n) for b, (s, n) in self.totals.items()]

    def best(self) -> tuple[frozenset[int], float, float] | None:
        """(skip set, mean acceptance, expected speedup) of the best observed set, or None.
        Kept until the next :meth:`observe` (the drafter asks every step)."""
        if self._best is None:
            scored = [(self.objective(skip, acc), acc, sorted(skip)) for skip, acc, _ in self.observed()]
            if scored:
                speedup, acc, skip = max(scored)
                self._best = frozenset(skip), acc, speedup
        return self._best

    def _random_bits(self) -> tuple[int, ...]:
        count = int(self.rng.integers(1, self.max_skip + 1))
        chosen = set(self.rng.choice(len(self.groups), size=count, replace=False).tolist())
        return tuple(int(i in chosen) for i in range(len(self.groups)))

    def _neighbours(self, bits: tuple[int, ...]) -> list[tuple[int, ...]]:
        out = []
        for i in range(len(bits)):
            flipped = list(bits)
            flipped[i] ^= 1
            if 1 <= sum(flipped) <= self.max_skip:
                out.append(tuple(flipped))
        on = [i for i, b in enumerate(bits) if b]
        off = [i for i, b in enumerate(bits) if not b]
        for _ in range(min(16, len(on) * len(off))):  # swaps keep the count
            swapped = list(bits)
            swapped[int(self.rng.choice(on))] = 0
            swapped[int(self.rng.choice(off))] = 1
            out.append(tuple(swapped))
        return out

    def _bayesian_bits(self) -> tuple[int, ...] | None:
        keys = list(self.totals)
        x = np.array(keys, dtype=np.float64)
        y = np.array([s / n for s, n in self.totals.values()])
        ranked = sorted(keys, key=lambda b: -self.objective(self._skip_set(b), self.totals[b][0] / self.totals[b][1]))
        pool = {b for top in ranked[:3] for b in self._neighbours(top)}
        pool |= {self._random_bits() for _ in range(max(1, self.pool // 4))}
        pool -= set(keys)
        if not pool:
            return None
        candidates = sorted(pool)
        mean, std = gp_posterior(
            x, y, np.array(candidates, dtype=np.float64), lengthscale=max(1.0, len(self.groups) / 8), noise=0.005
        )
        optimistic = np.clip(mean + self.beta * std, 0.0, 1.0)
        scores = [self.objective(self._skip_set(b), float(a)) for b, a in zip(candidates, optimistic)]
        return candidates[int(np.argmax(scores))]

    def suggest(self, count: int) -> list[frozenset[int]]:
        """Up to ``count`` new skip sets to measure: random and Bayesian proposals
        alternate (the first proposals, before two observations exist, are random).
        Fewer (possibly none) when no unmeasured set turns up."""
        out: list[frozenset[int]] = []
        seen = set(self.totals)
        for _ in range(count):
            bits = None
            if self.proposals % 2 == 1 and len(self.totals) >= 2:
                bits = self._bayesian_bits()
            for _ in range(32):
                if bits is not None and bits not in seen:
                    break
                bits = self._random_bits()
            self.proposals += 1
            if bits in seen:
                continue  # the space is (nearly) exhausted
            seen.add(bits)
            out.append(self._skip_set(bits))
        return out


class SkipSetCache:
    """Measured acceptances of skip sets, per model and method, kept across requests.

    Pass the same instance (or the same ``path``) to several requests: a request whose
    model has entries starts drafting with the best of them at once instead of searching.
    The cache only changes which drafts are proposed, never the output.

    Args:
        path: JSON file to load from (if it exists) and write to after every update
            (atomically); None keeps entries in memory only.
        max_entries: sets kept per key (the lowest-acceptance ones are dropped first).
        discard_invalid: when ``path`` holds something that is not such a cache, warn and
            start empty (the file is replaced at the next update) instead of raising.

    Raises:
        ValueError: ``path`` exists but is not a cache file written by this class (and
            not ``discard_invalid``).
    """

    def __init__(self, path: str | Path | None = None, max_entries: int = 64, discard_invalid: bool = False):
        self.path = None if path is None else Path(path)
        self.max_entries = max_entries
        self.table: dict[str, dict[str, list[float]]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.table = self._read(self.path)
            except ValueError as err:
                if not discard_invalid:
                    raise
                warnings.warn(f"{err}; starting an empty skip-set cache there", stacklevel=2)

    @staticmethod
    def _read(path: Path) -> dict[str, dict[str, list[float]]]:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a skip-set cache ({err})") from None
        if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("entries"), dict):
            raise ValueError(f"{path}: not a skip-set cache written by hasten")
        return data["entries"]

    @staticmethod
    def _name(skip: Iterable[int]) -> str:
        return ",".join(str(u) for u in sorted(skip))

    def entries(self, key: str) -> list[tuple[frozenset[int], float, float]]:
        """(skip set, mean acceptance 0-1, measurements) recorded under ``key``."""
        out = []
        for name, (total, count) in self.table.get(key, {}).items():
            skip = frozenset(int(u) for u in name.split(",") if u)
            out.append((skip, total / count, count))
        return out

    def measurements(self, key: str) -> int:
        """How many measurements are recorded under ``key`` (of the sets still kept)."""
        return int(sum(count for _, count in self.table.get(key, {}).values()))

    def record(self, key: str, skip: frozenset[int], acceptance: float) -> None:
        """Add one measured acceptance of ``skip`` under ``key`` (saved if a path is set)."""
        sets = self.table.setdefault(key, {})
        total, count = sets.get(self._name(skip), (0.0, 0.0))
        sets[self._name(skip)] = [total + acceptance, count + 1]
        if len(sets) > self.max_entries:
            worst = min(sets, key=lambda name: sets[name][0] / sets[name][1])
            del sets[worst]
        if self.path is not None:
            self.save()

    def save(self) -> None:
        """Write the cache to ``path`` atomically.

        Raises:
            ValueError: no path was given.
        """
        if self.path is None:
            raise ValueError("this SkipSetCache has no path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": 1, "entries": self.table}, f, indent=1)
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return sum(len(v) for v in self.table.values())


def default_skip_cache_path() -> Path:
    """``<user cache>/hasten/skip_sets.json``: the file ``skip_cache="auto"`` uses."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hasten")) / "skip_sets.json"


def check_skip_cache(spec: Any) -> None:
    """Validate a config's ``skip_cache`` without reading any file.

    Raises:
        ValueError: ``spec`` is not ``"auto"``, a :class:`SkipSetCache`, a path or None.
    """
    if not (spec is None or isinstance(spec, (SkipSetCache, str, Path))):
        raise ValueError(f"skip_cache must be 'auto', a SkipSetCache, a path or None, got {type(spec).__name__}")


def resolve_skip_cache(spec: Any) -> SkipSetCache | None:
    """The :class:`SkipSetCache` a config's ``skip_cache`` names.

    ``"auto"``: the per-user file :func:`default_skip_cache_path` (an unreadable one is
    replaced, with a warning); a str or Path: that JSON file (created on the first
    update); a :class:`SkipSetCache`: itself; None: no cache (each request searches).

    Raises:
        ValueError: an invalid ``spec``, or a named file that is not a skip-set cache.
    """
    check_skip_cache(spec)
    if spec is None or isinstance(spec, SkipSetCache):
        return spec
    if isinstance(spec, str) and spec == "auto":
        return SkipSetCache(default_skip_cache_path(), discard_invalid=True)
    return SkipSetCache(spec)
