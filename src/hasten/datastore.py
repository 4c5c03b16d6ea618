"""Token datastores: a tokenized corpus indexed for longest-suffix lookup.

Retrieval drafting (REST, He et al., "REST: Retrieval-Based Speculative Decoding",
arXiv 2311.08252) looks up the longest suffix of the current context in a corpus and
drafts the tokens that followed its occurrences. The corpus is one token array with
documents separated by :data:`SEPARATOR`; the index is a suffix array of the *reversed*
array, sorted by the first ``sort_depth`` tokens only. In the reversed array a context
suffix ``c[-n:]`` reads ``c[-1], c[-2], ..., c[-n]``, so the occurrences of longer and
longer suffixes are nested ranges of the index: one pass of binary searches, one token at
a time, finds the longest match (O(max_match log M) scalar reads per lookup, no scan).

Files are written to a temporary name and renamed into place, so an interrupted write
never leaves a corrupt datastore. :func:`build_datastore` checkpoints tokenized chunks in
``OUT.partial/`` and resumes from them after an interruption.

Dims: M corpus tokens (separators included).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

__all__ = ["Datastore", "build_datastore", "suffix_order", "document_text", "atomic_write", "SEPARATOR"]

SEPARATOR = -1  # between documents; never matches a query token
_FORMAT = 1
_BEYOND_END = -2  # sorts before the separator and every token


def suffix_order(seq: np.ndarray, depth: int) -> np.ndarray:
    """Start positions of ``seq`` sorted by their first ``depth`` tokens (prefix doubling).

    Positions are compared like the tuples ``tuple(seq[i:i + depth])``: a suffix that ends
    sooner sorts first, and positions with equal first ``depth`` tokens are in no
    particular order.

    Args:
        seq: (M,) integer array; values >= -1.
        depth: tokens that must be in order (>= 1).

    Returns:
        (M,) int64 permutation.

    Example: seq [2, 1, 2, 0], depth 2 -> [3, 1, 2, 0] (keys (0,), (1, 2), (2, 0), (2, 1)).
    """
    n = len(seq)
    rank = seq.astype(np.int64) + 2  # separator -> 1, beyond the end -> 0
    order = np.argsort(rank, kind="stable")
    k = 1
    while k < depth and n:
        shifted = np.zeros(n, dtype=np.int64)
        shifted[: max(n - k, 0)] = rank[k:]
        order = np.lexsort((shifted, rank))
        first, second = rank[order], shifted[order]
        new_key = np.ones(n, dtype=bool)
        new_key[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
        dense = np.cumsum(new_key)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = dense
        if dense[-1] == n:
            break
        k *= 2
    return order


class Datastore:
    """A tokenized corpus with a reversed suffix index (see module docstring).

    Attributes:
        tokens: (M,) int32, documents separated by :data:`SEPARATOR`.
        order: (M,) int64 suffix order of ``tokens[::-1]`` by the first ``sort_depth`` tokens.
        meta: {"format", "sort_depth", "documents", "model", "vocab_size", ...}.
    """

    def __init__(self, tokens: np.ndarray, order: np.ndarray, meta: dict[str, Any]):
        self.tokens = tokens
        self.order = order
        self.meta = meta
        self.sort_depth = int(meta["sort_depth"])
        self._reversed = tokens[::-1]

    @classmethod
    def from_sequences(cls, sequences: Iterable[Iterable[int]], *, sort_depth: int = 16, **meta: Any) -> "Datastore":
        """Index token sequences (one per document); extra keywords are stored in ``meta``.

        Raises:
            ValueError: ``sort_depth < 1`` or a negative token id.
        """
        if sort_depth < 1:
            raise ValueError(f"sort_depth must be >= 1, got {sort_depth}")
        flat: list[int] = []
        documents = 0
        for sequence in sequences:
            flat.extend(int(t) for t in sequence)
            flat.append(SEPARATOR)
            documents += 1
        tokens = np.asarray(flat, dtype=np.int32)
        if (tokens[tokens != SEPARATOR] < 0).any():
            raise ValueError("token ids must be >= 0")
        return cls._index(tokens, sort_depth, documents=documents, **meta)

    @classmethod
    def _index(cls, tokens: np.ndarray, sort_depth: int, **meta: Any) -> "Datastore":
        order = suffix_order(tokens[::-1], sort_depth)
        return cls(tokens, order, {"format": _FORMAT, "sort_depth": sort_depth, **meta})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def max_token(self) -> int:
        return int(self.tokens.max()) if len(self.tokens) else -1

    def sequences(self) -> Iterator[list[int]]:
        """The documents, as token lists, in corpus order."""
        start = 0
        for end in np.flatnonzero(self.tokens == SEPARATOR).tolist():
            yield self.tokens[start:end].tolist()
            start = end + 1

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (numpy ``.npz`` layout, whatever the name) via a temporary file
        and an atomic rename."""
        meta = np.array(json.dumps(self.meta))
        atomic_write(Path(path), lambda f: np.savez(f, tokens=self.tokens, order=self.order, meta=meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Datastore":
        """Read a datastore written by :meth:`save` or ``hasten datastore build``.

        Raises:
            OSError: missing or unreadable file.
            ValueError: not a datastore, or one of another format version.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                tokens, order = data["tokens"], data["order"]
        except (KeyError, json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}: not a hasten datastore ({err})") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: datastore format {meta.get('format')}, expected {_FORMAT}; rebuild it")
        return cls(tokens, order, meta)

    def _bound(self, lo: int, hi: int, offset: int, token: int, upper: bool) -> int:
        """First index in [lo, hi) whose reversed suffix has, at ``offset``, a token
        >= ``token`` (``upper``: > ``token``)."""
        size = len(self.tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            pos = int(self.order[mid]) + offset
            key = int(self._reversed[pos]) if pos < size else _BEYOND_END
            if key < token or (upper and key == token):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def lookup(self, context: list[int], max_match: int) -> tuple[int, int, int]:
        """Longest suffix of ``context`` (up to ``max_match`` and ``sort_depth`` tokens)
        found in the corpus.

        Returns:
            (match length in tokens, lo, hi): ``order[lo:hi]`` are the reversed positions
            of its occurrences; (0, 0, M) when not even the last token occurs.

        Example: corpus [[4, 5, 6], [9, 5, 6, 7]], context [1, 5, 6] -> match length 2,
        two occurrences (both "5 6").
        """
        lo, hi = 0, len(self.tokens)
        depth = min(max_match, self.sort_depth, len(context))
        for offset in range(depth):
            token = context[-1 - offset]
            new_lo = self._bound(lo, hi, offset, token, upper=False)
            new_hi = self._bound(new_lo, hi, offset, token, upper=True)
            if new_lo == new_hi:
                return offset, lo, hi
            lo, hi = new_lo, new_hi
        return depth, lo, hi

    def continuation(self, reversed_pos: int, length: int) -> list[int]:
        """Up to ``length`` tokens that follow the occurrence ending at reversed position
        ``reversed_pos``, stopping at the end of its document."""
        start = len(self.tokens) - reversed_pos
        out = self.tokens[start : start + length].tolist()
        if SEPARATOR in out:
            out = out[: out.index(SEPARATOR)]
        return out

    def continuations(
        self, context: list[int], *, max_match: int, min_match: int, max_occurrences: int, length: int
    ) -> tuple[int, list[list[int]]]:
        """Continuations of the longest matching suffix of ``context``.

        Args:
            context: committed token ids.
            max_match / min_match: longest suffix tried / shortest accepted (tokens).
            max_occurrences: occurrences used, spread evenly over all of them.
            length: tokens per continuation.

        Returns:
            (match length, non-empty continuations); (0, []) below ``min_match``.
        """
        matched, lo, hi = self.lookup(context, max_match)
        if matched < max(min_match, 1):
            return 0, []
        count = hi - lo
        picks = (
            range(lo, hi)
            if count <= max_occurrences
            else (lo + (i * count) // max_occurrences for i in range(max_occurrences))
        )
        found = (self.continuation(int(self.order[i]), length) for i in picks)
        return matched, [c for c in found if c]


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def document_text(record: Any, field: str | None = None) -> str:
    """The text of one corpus record (a parsed JSONL line).

    With ``field``: that key's value. Otherwise the first of "text", "content", "turns"
    (Spec-Bench; a list of strings), "messages" (chat; a list of {"content": ...}),
    "prompt" + "completion" / "canonical_solution" that is present. A plain string record
    is its own text. Lists are joined with newlines.

    Raises:
        ValueError: the record has none of these (or lacks ``field``).

    Example: {"turns": ["Hi", "Bye"]} -> "Hi\\nBye".
    """
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object or string per line, got {type(record).__name__}")
    if field is not None:
        if field not in record:
            raise ValueError(f"record has no field {field!r} (fields: {sorted(record)})")
        return _flatten(record[field])
    for key in ("text", "content", "turns", "messages"):
        if key in record:
            return _flatten(record[key])
    if "prompt" in record:
        return record["prompt"] + record.get("completion", record.get("canonical_solution", ""))
    raise ValueError(f"no text field in record (fields: {sorted(record)}); pass --field")


def _flatten(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(_flatten(v["content"] if isinstance(v, dict) else v) for v in value)
    return str(value)


def _fingerprint(corpus: Path, **settings: Any) -> dict[str, Any]:
    stat = corpus.stat()
    return {"corpus": str(corpus.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, **settings}


def _write_json(path: Path, value: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(value).encode()))


def build_datastore(
    corpus: str | os.PathLike,
    tokenize: Callable[[list[str]], list[list[int]]],
    out: str | os.PathLike,
    *,
    field: str | None = None,
    chunk_lines: int = 256,
    sort_depth: int = 16,
    restart: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **meta: Any,
) -> Datastore:
    """Tokenize a JSONL corpus into a datastore at ``out``, resumably.

    Tokenized chunks of ``chunk_lines`` lines are checkpointed in ``OUT.partial/`` (each
    chunk and the progress record written atomically). Interrupting (Ctrl-C) loses at most
    the chunk in flight; calling again with the same corpus, field and ``meta`` resumes
    after the last checkpoint. ``out`` is written only when complete, atomically.

    Args:
        corpus: JSONL file, one record per line (see :func:`document_text`).
        tokenize: texts -> token id lists (the target model's tokenizer, no special tokens).
        out: the datastore file to write.
        field: the record field holding the text; None = detect.
        chunk_lines: lines per checkpoint.
        sort_depth: tokens the index orders by (the longest match a lookup can find).
        restart: discard checkpoints and start over.
        progress: called with (bytes read, corpus bytes) after each chunk.
        meta: stored in the datastore (e.g. model="smollm2-135m", vocab_size=49152); part
            of the checkpoint identity.

    Returns:
        The datastore.

    Raises:
        OSError: unreadable corpus or unwritable output.
        ValueError: a line that is not JSON or has no text.
    """
    corpus, out = Path(corpus), Path(out)
    partial = out.with_name(out.name + ".partial")
    identity = _fingerprint(corpus, field=field, chunk_lines=chunk_lines, **meta)
    state = _open_checkpoint(partial, identity, restart)
    total = corpus.stat().st_size
    with corpus.open("rb") as lines:
        for _ in range(state["lines"]):
            lines.readline()
        while True:
            batch = [line for line in (lines.readline() for _ in range(chunk_lines)) if line]
            if not batch:
                break
            texts = []
            for number, raw in enumerate(batch, start=state["lines"] + 1):
                if raw.strip():
                    try:
                        texts.append(document_text(json.loads(raw), field))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{corpus}:{number}: not JSON ({err})") from None
            ids = tokenize(texts) if texts else []
            flat = [t for doc in ids for t in (*doc, SEPARATOR)]
            name = f"chunk-{len(state['chunks']):06d}.npy"
            atomic_write(partial / name, lambda f, flat=flat: np.save(f, np.asarray(flat, dtype=np.int32)))
            state["chunks"].append(name)
            state["lines"] += len(batch)
            state["documents"] += len(ids)
            _write_json(partial / "progress.json", state)
            if progress is not None:
                progress(lines.tell(), total)
    parts = [np.load(partial / name) for name in state["chunks"]]
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    store = Datastore._index(tokens, sort_depth, documents=state["documents"], **meta)
    store.save(out)
    shutil.rmtree(partial)
    return store


def _open_checkpoint(partial: Path, identity: dict[str, Any], restart: bool) -> dict[str, Any]:
    """The saved progress in ``partial`` if it belongs to ``identity``; else a fresh start."""
    record = partial / "progress.json"
    if not restart and record.is_file():
        state = json.loads(record.read_text())
        if state.get("identity") == identity and all((partial / c).is_file() for c in state["chunks"]):
            return state
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    state = {"identity": identity, "lines": 0, "documents": 0, "chunks": []}
    _write_json(record, state)
    return state
