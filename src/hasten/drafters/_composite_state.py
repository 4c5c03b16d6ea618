"""State the ``composite`` drafter keeps beyond one request: the cross-request pool of earlier
outputs and the per-model calibration of its sources' scores. Both only change which drafts
are proposed, never the output.

- :class:`CrossRequestPool`: earlier requests' outputs, searchable by longest suffix through
  a :class:`~hasten.sam.SuffixAutomaton` (documents joined by a separator token), bounded in
  memory by ``max_tokens`` (oldest documents dropped first), optionally saved to a file.
  llama.cpp's server keeps a similar shared n-gram pool across requests (``ngram-mod``).
- :class:`SourceCalibration`: per source and per score bin, the decayed rate at which a
  proposed node is accepted when its parent was (the per-request online estimate), with a
  prior from earlier requests of the same model.
- :class:`CalibrationStore`: those counts per model, in memory and in a JSON file (by
  default beside the skip sets of ``layer_skip`` / ``early_exit``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import deque
from pathlib import Path
from typing import Any

from ..sam import SuffixAutomaton

__all__ = [
    "CrossRequestPool",
    "SourceCalibration",
    "CalibrationStore",
    "process_pool",
    "resolve_calibration_cache",
    "default_calibration_path",
    "SEPARATOR",
]

SEPARATOR = -1  # between pool documents; never a token id, so no match spans two documents
_FORMAT = 1


class CrossRequestPool:
    """Earlier outputs as one searchable text, at most ``max_tokens`` tokens.

    Memory bound: the pool holds at most ``max_tokens`` tokens (separators included), so
    its automaton has at most ``2 * max_tokens`` states; measured with tracemalloc at
    about 0.5 KB per token on CPython (32,768 tokens: about 16 MB). Adding a
    document that would exceed the bound drops the oldest documents until the pool is at
    most 3/4 full (then the automaton is rebuilt: amortized O(1) per added token); a
    document longer than the bound keeps its last tokens.

    Args:
        max_tokens: the bound (tokens, >= 2).
        path: a JSON file the pool is loaded from (if it exists) and saved to by :meth:`save`.

    Raises:
        ValueError: ``max_tokens < 2``, or ``path`` holds something that is not a saved pool.

    Example: max_tokens 8; add [1, 2, 3] and [4, 5, 6] (8 tokens with separators); add
    [7] -> the oldest document goes (6 tokens left): documents [[4, 5, 6], [7]].
    """

    def __init__(self, max_tokens: int = 32_768, path: str | os.PathLike | None = None):
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
        self.max_tokens = max_tokens
        self.path = None if path is None else Path(path)
        self.documents: deque[list[int]] = deque()
        self.version = 0  # bumps whenever the automaton changes (matchers resynchronize)
        self.dropped = 0
        self.automaton = SuffixAutomaton()
        if self.path is not None and self.path.is_file():
            for document in self._read(self.path):
                self.add(document)

    @staticmethod
    def _read(path: Path) -> list[list[int]]:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a saved draft pool ({err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("documents"), list):
            raise ValueError(f"{path}: not a draft pool saved by hasten")
        return [[int(t) for t in doc] for doc in data["documents"]]

    @property
    def num_tokens(self) -> int:
        """Tokens held, separators included (<= ``max_tokens``)."""
        return len(self.automaton)

    def add(self, document) -> None:
        """Append one output (token ids); drops the oldest documents past the bound."""
        document = [int(t) for t in document][-(self.max_tokens - 1) :]
        if not document:
            return
        if self.num_tokens + len(document) + 1 > self.max_tokens:
            keep = self.max_tokens * 3 // 4 - len(document) - 1
            while self.documents and sum(len(d) + 1 for d in self.documents) > max(0, keep):
                self.documents.popleft()
                self.dropped += 1
            self.automaton = SuffixAutomaton()
            for old in self.documents:
                self.automaton.extend_all(old + [SEPARATOR])
        self.documents.append(document)
        self.automaton.extend_all(document + [SEPARATOR])
        self.version += 1

    def save(self) -> None:
        """Write the documents to ``path`` atomically.

        Raises:
            ValueError: the pool has no path.
        """
        if self.path is None:
            raise ValueError("this CrossRequestPool has no path")
        from ..datastore import atomic_write

        payload = json.dumps({"format": _FORMAT, "documents": list(self.documents)}).encode()
        atomic_write(self.path, lambda f: f.write(payload))


_PROCESS_POOLS: dict[tuple[str, str], CrossRequestPool] = {}


def process_pool(model_key: str, max_tokens: int, path: str | os.PathLike | None = None) -> CrossRequestPool:
    """The process-wide pool of a model (and file, if ``path``): the in-process cross-request
    pool, created on first use. A pool of another model's outputs would draft the wrong
    token ids, so pools are kept per model key."""
    key = (model_key, "" if path is None else str(Path(path).resolve()))
    pool = _PROCESS_POOLS.get(key)
    if pool is None or pool.max_tokens != max_tokens:
        pool = _PROCESS_POOLS[key] = CrossRequestPool(max_tokens, path)
    return pool


def clear_process_pools() -> None:
    """Forget every process-wide pool (tests; freeing memory)."""
    _PROCESS_POOLS.clear()


class SourceCalibration:
    """P(node accepted | parent accepted) per (source, bin), learned online.

    ``rate(s, b) = (hits + prior * weight) / (trials + weight)`` with counts decayed by
    ``decay`` per verification step; ``prior`` is the source's default prior for the bin,
    raised to the bin's rate in earlier requests of the same model (``history``) when that
    is higher (optimistic start: measured on 7 dev prompts, letting history also lower
    priors made requests explore less and decode slower).

    Args:
        priors: source -> default prior per bin (fractions 0-1).
        weight: how many observations the prior is worth.
        decay: weight kept by older observations per step (0-1).
        history: source -> {bin: (hits, trials)} from earlier requests.

    Example: priors {"a": (0.5,)}, weight 2; observe ("a", 0) accepted twice ->
    rate("a", 0) = (2 + 1) / (2 + 2) = 0.75.
    """

    def __init__(
        self,
        priors: dict[str, tuple[float, ...]],
        weight: float = 4.0,
        decay: float = 0.97,
        history: dict[str, dict[int, tuple[float, float]]] | None = None,
    ):
        self.weight, self.decay = weight, decay
        self.priors = {s: list(p) for s, p in priors.items()}
        for source, bins in (history or {}).items():
            for b, (hits, trials) in bins.items():
                if source in self.priors and 0 <= b < len(self.priors[source]) and trials > 0:
                    # earlier requests' rate, shrunk towards the default by the evidence they
                    # had; never below the default, so a request still explores a bin that
                    # earlier requests found poor (their evidence only raises priors)
                    default = self.priors[source][b]
                    self.priors[source][b] = max(default, (hits + default * weight) / (trials + weight))
        self.hits = {s: [0.0] * len(p) for s, p in priors.items()}
        self.trials = {s: [0.0] * len(p) for s, p in priors.items()}
        self.totals: dict[str, dict[int, list[float]]] = {s: {} for s in priors}  # undecayed, for the store

    def rate(self, source: str, b: int) -> float:
        return (self.hits[source][b] + self.priors[source][b] * self.weight) / (self.trials[source][b] + self.weight)

    def step(self) -> None:
        """Age every count by one verification step."""
        d = self.decay
        if d < 1:
            for source in self.hits:
                self.hits[source] = [h * d for h in self.hits[source]]
                self.trials[source] = [t * d for t in self.trials[source]]

    def observe(self, source: str, b: int, accepted: bool) -> None:
        self.hits[source][b] += accepted
        self.trials[source][b] += 1.0
        total = self.totals[source].setdefault(b, [0.0, 0.0])
        total[0] += accepted
        total[1] += 1.0


def default_calibration_path() -> Path:
    """``<user cache>/hasten/composite_calibration.json``, beside the skip sets."""
    from . import _skip_search

    return _skip_search.default_skip_cache_path().with_name("composite_calibration.json")


class CalibrationStore:
    """Per-model calibration counts, {model key: {source: {bin: (hits, trials)}}}, kept in
    memory and, with a ``path``, in a JSON file written atomically by :meth:`save`.

    Args:
        path: the JSON file (read if it exists); None = memory only.
        carry: weight kept by the stored counts each time a request's counts are folded
            in (0-1); lower forgets older requests faster.
        max_trials: per bin, stored counts are scaled down to at most this many trials.
        discard_invalid: warn and start empty on an unreadable file instead of raising.

    Raises:
        ValueError: ``path`` holds something that is not a calibration file.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        carry: float = 0.9,
        max_trials: float = 200.0,
        discard_invalid: bool = False,
    ):
        self.path = None if path is None else Path(path)
        self.carry, self.max_trials = carry, max_trials
        self.table: dict[str, dict[str, dict[str, list[float]]]] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if (
                    not isinstance(data, dict)
                    or data.get("format") != _FORMAT
                    or not isinstance(data.get("models"), dict)
                ):
                    raise ValueError("wrong layout")
                self.table = data["models"]
            except (ValueError, UnicodeDecodeError) as err:
                message = f"{self.path}: not a composite calibration file ({err})"
                if not discard_invalid:
                    raise ValueError(message) from None
                warnings.warn(message + "; starting empty", stacklevel=2)

    def history(self, model_key: str) -> dict[str, dict[int, tuple[float, float]]]:
        """source -> {bin: (hits, trials)} stored for ``model_key``."""
        entry = self.table.get(model_key, {})
        return {s: {int(b): (float(h), float(t)) for b, (h, t) in bins.items()} for s, bins in entry.items()}

    def fold(self, model_key: str, totals: dict[str, dict[int, list[float]]]) -> None:
        """Add one request's (hits, trials) per source and bin; older counts keep ``carry``."""
        entry = self.table.setdefault(model_key, {})
        for source, bins in totals.items():
            stored = entry.setdefault(source, {})
            for b, (hits, trials) in bins.items():
                old_h, old_t = stored.get(str(b), (0.0, 0.0))
                h, t = old_h * self.carry + hits, old_t * self.carry + trials
                if t > self.max_trials:
                    h, t = h * self.max_trials / t, self.max_trials
                stored[str(b)] = [round(h, 4), round(t, 4)]

    def save(self) -> None:
        if self.path is None:
            return
        from ..datastore import atomic_write

        payload = json.dumps({"format": _FORMAT, "models": self.table}, indent=1).encode()
        atomic_write(self.path, lambda f: f.write(payload))


def resolve_calibration_cache(spec: Any) -> CalibrationStore | None:
    """``"auto"`` -> the per-user file :func:`default_calibration_path` (an unreadable one is
    replaced, with a warning); a str / Path -> that file; a :class:`CalibrationStore` ->
    itself; None -> none (each request starts from the default priors).

    Raises:
        ValueError: another kind of value, or a named file that is not a calibration file.
    """
    if spec is None or isinstance(spec, CalibrationStore):
        return spec
    if isinstance(spec, str) and spec == "auto":
        return CalibrationStore(default_calibration_path(), discard_invalid=True)
    if isinstance(spec, (str, Path)):
        return CalibrationStore(spec)
    raise ValueError(f"calibration_cache must be 'auto', a path, a CalibrationStore or None, got {type(spec).__name__}")
