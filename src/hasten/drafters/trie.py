"""Trie drafting: multi-branch retrieval from a frequency-weighted token trie.

Implements the trie retrieval of Lookahead (Zhao et al., "Lookahead: An Inference
Acceleration Framework for Large Language Model with Lossless Generation Accuracy",
arXiv 2312.12728). Every window of ``branch_length`` tokens of the prompt and of the
generated output is inserted into a token trie whose node counts how often its path
occurred. To draft, the last k committed tokens (k = ``max_match`` down to 1) are looked
up as a path from the trie root; the most frequent continuations below the matched node
become a draft tree, scored by their empirical probability count(path) / count(context)
and taken best first (multi-branch retrieval). Shorter contexts only fill what the longer
ones left, at a discount.

Two tries are consulted:

- the *request trie*: prompt + output of the current request, rebuilt in ``begin()`` (no
  state crosses requests; this is the default);
- an optional *shared trie* (:class:`TokenTrie` passed as ``trie=``, loaded from ``path=``
  and/or warmed up from a datastore ``corpus=``): it keeps what earlier requests generated
  (when ``learn``), persists across processes with :meth:`TokenTrie.save` /
  :meth:`TokenTrie.load`, and is bounded by ``capacity`` nodes with frequency-then-recency
  eviction. It changes only which drafts are proposed, never the output.

Glossary: *window* = consecutive tokens inserted as one trie path; *context* = the matched
suffix of the committed tokens; *node budget* = most draft nodes per step.
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tree import DraftTree
from ._tree_build import merge_max, tree_from_scores
from .base import Drafter, MethodSpec, register

__all__ = ["TrieConfig", "TrieDrafter", "TokenTrie", "TrieFeeder"]

# A node is a list [count, last_used, children]; children maps token -> node. Lists, not
# objects, because insertion and lookup run for every committed token.
_COUNT, _LAST, _CHILDREN = 0, 1, 2
_FORMAT = 1


class TokenTrie:
    """Counts of token paths with bounded size.

    ``count`` of the node at path s = how many inserted windows start with s (with
    :class:`TrieFeeder`: how many times s occurred in the fed token stream).

    Args:
        capacity: most nodes kept (the root excluded); inserting beyond it evicts the
            least frequent, then least recently used, nodes down to 3/4 of it.

    Raises:
        ValueError: ``capacity < 1``.
    """

    def __init__(self, capacity: int = 200_000):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.root: list = [0, 0, {}]
        self.size = 0
        self.clock = 0  # advances per insertion; stamps nodes for recency
        self.evicted = 0
        self.generation = 0  # bumps on eviction so feeders drop their cursors

    def child(self, node: list, token: int, weight: int = 1, stamp: int | None = None) -> list:
        """The child of ``node`` for ``token`` (created if missing) after adding ``weight``
        to its count and stamping it with ``stamp`` (default: the clock; a window stamps
        all its nodes with its start time, so a child is never more recent than its
        parent). Evicts once the trie is over capacity (so the returned node may be
        detached: check ``generation``)."""
        children = node[_CHILDREN]
        nxt = children.get(token)
        if nxt is None:
            nxt = children[token] = [0, 0, {}]
            self.size += 1
        nxt[_COUNT] += weight
        stamp = self.clock if stamp is None else stamp
        if stamp > nxt[_LAST]:
            nxt[_LAST] = stamp
        if self.size > self.capacity:
            self.evict(self.capacity * 3 // 4)
        return nxt

    def insert(self, tokens, weight: int = 1) -> None:
        """Add one occurrence (``weight`` occurrences) of ``tokens`` and its prefixes.

        Example: insert [5, 6] then [5, 7] -> count(5) = 2, count(5, 6) = count(5, 7) = 1.
        """
        self.clock += 1
        self.root[_COUNT] += weight
        node = self.root
        generation = self.generation
        for token in tokens:
            node = self.child(node, int(token), weight)
            if self.generation != generation:
                return

    def find(self, tokens) -> list | None:
        """The node at path ``tokens`` (a list node), or None."""
        node = self.root
        for token in tokens:
            node = node[_CHILDREN].get(token)
            if node is None:
                return None
        return node

    def count(self, tokens) -> int:
        """Occurrences recorded for path ``tokens`` (0 if absent)."""
        node = self.find(tokens)
        return 0 if node is None else node[_COUNT]

    def evict(self, keep: int) -> None:
        """Drop nodes until at most ``keep`` remain: lowest count first, then least recently
        used, deepest first. A child never outranks its parent (its count and stamp are
        not larger), so whole subtrees go and paths stay connected."""
        entries = []
        stack = [(self.root[_CHILDREN], 1)]
        while stack:
            children, depth = stack.pop()
            for token, node in children.items():
                entries.append((node[_COUNT], node[_LAST], -depth, token, children, node))
                stack.append((node[_CHILDREN], depth + 1))
        entries.sort(key=lambda e: e[:3])
        for _, _, _, token, children, node in entries[: max(0, self.size - keep)]:
            if children.get(token) is node:
                del children[token]
                removed = _subtree_size(node)
                self.size -= removed
                self.evicted += removed
        self.generation += 1

    def best_paths(
        self, context: list, max_nodes: int, max_depth: int, min_prob: float, pseudo_count: float = 0.0
    ) -> dict[tuple[int, ...], float]:
        """The likeliest continuations below ``context`` (a node), best first.

        A path's probability is its count over the summed counts of the context's
        children (occurrences of the context that had a continuation) plus
        ``pseudo_count`` (mass kept for continuations never seen; > 0 makes rarely seen
        contexts less confident: one occurrence with pseudo_count 1 gives 1/2).

        Returns:
            {path: probability}, at most ``max_nodes`` paths, none deeper than
            ``max_depth`` or below ``min_prob``.

        Example: after inserting [1, 2, 3], [1, 2, 4], [1, 5], the context node of [1] gives
        {(2,): 2/3, (2, 3): 1/3, (2, 4): 1/3, (5,): 1/3}.
        """
        seen = sum(child[_COUNT] for child in context[_CHILDREN].values())
        if seen == 0:
            return {}
        total = seen + pseudo_count
        out: dict[tuple[int, ...], float] = {}
        heap: list = []

        def push(node: list, path: tuple[int, ...]) -> None:
            if len(path) >= max_depth:
                return
            best = heapq.nlargest(max_nodes - len(out), node[_CHILDREN].items(), key=lambda kv: kv[1][_COUNT])
            for token, child in best:
                heapq.heappush(heap, (-child[_COUNT] / total, path + (token,), child))

        push(context, ())
        while heap and len(out) < max_nodes:
            neg_prob, path, node = heapq.heappop(heap)
            if -neg_prob < min_prob:
                break
            out[path] = -neg_prob
            push(node, path)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the trie to ``path`` (numpy ``.npz`` layout, preorder node arrays) via a
        temporary file and an atomic rename."""
        from ..datastore import atomic_write

        tokens, counts, lasts, sizes = [], [], [], []
        stack = [(-1, self.root)]
        while stack:
            token, node = stack.pop()
            tokens.append(token)
            counts.append(node[_COUNT])
            lasts.append(node[_LAST])
            sizes.append(len(node[_CHILDREN]))
            stack.extend(reversed(list(node[_CHILDREN].items())))
        meta = np.array(json.dumps({"format": _FORMAT, "capacity": self.capacity, "clock": self.clock}))
        arrays = {
            "tokens": np.asarray(tokens, dtype=np.int64),
            "counts": np.asarray(counts, dtype=np.int64),
            "lasts": np.asarray(lasts, dtype=np.int64),
            "children": np.asarray(sizes, dtype=np.int64),
        }
        atomic_write(Path(path), lambda f: np.savez(f, meta=meta, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, capacity: int | None = None) -> "TokenTrie":
        """A trie written by :meth:`save` (same nodes, counts and child order).

        Args:
            capacity: overrides the saved capacity (evicting at once if exceeded).

        Raises:
            OSError: missing or unreadable file.
            ValueError: not a saved trie, or another format version.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                columns = [data[k].tolist() for k in ("tokens", "counts", "lasts", "children")]
        except (KeyError, json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{path}: not a saved token trie ({err})") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: trie format {meta.get('format')}, expected {_FORMAT}")
        trie = cls(meta["capacity"] if capacity is None else capacity)
        trie.clock = meta["clock"]
        nodes = [[c, last, {}] for c, last in zip(columns[1], columns[2])]
        trie.root = nodes[0]
        trie.size = len(nodes) - 1
        open_parents = [(nodes[0], columns[3][0])]  # (node, children still to attach)
        for index in range(1, len(nodes)):
            while open_parents[-1][1] == 0:
                open_parents.pop()
            parent, remaining = open_parents.pop()
            parent[_CHILDREN][columns[0][index]] = nodes[index]
            open_parents.append((parent, remaining - 1))
            open_parents.append((nodes[index], columns[3][index]))
        if trie.size > trie.capacity:
            trie.evict(trie.capacity * 3 // 4)
        return trie


def _subtree_size(node: list) -> int:
    size, stack = 0, [node]
    while stack:
        current = stack.pop()
        size += 1
        stack.extend(current[_CHILDREN].values())
    return size


class TrieFeeder:
    """Inserts a token stream into a trie, one window of ``depth`` tokens per position,
    incrementally: each fed token extends the (at most ``depth``) windows still open, so a
    token costs O(depth) dictionary operations and counts are exact at every moment.

    Example: depth 2, feed [1, 2, 1, 2] -> count(1) = 2, count(1, 2) = 2, count(2, 1) = 1.
    """

    def __init__(self, trie: TokenTrie, depth: int):
        self.trie, self.depth = trie, depth
        self.cursors: list[tuple[list, int, int]] = []  # (node, window length so far, start stamp)
        self.generation = trie.generation

    def feed(self, tokens) -> None:
        trie = self.trie
        for token in tokens:
            token = int(token)
            trie.clock += 1
            trie.root[_COUNT] += 1
            if self.generation != trie.generation:
                self.cursors, self.generation = [], trie.generation
            self.cursors.append((trie.root, 0, trie.clock))
            advanced = []
            for node, length, stamp in self.cursors:
                node = trie.child(node, token, 1, stamp)
                if self.generation != trie.generation:  # evicted under us: restart windows
                    advanced, self.generation = [], trie.generation
                    break
                if length + 1 < self.depth:
                    advanced.append((node, length + 1, stamp))
            self.cursors = advanced

    def end_document(self) -> None:
        """Close the open windows: the next token starts an unrelated stream."""
        self.cursors = []


@dataclass(frozen=True)
class TrieConfig:
    """Trie drafting settings.

    Attributes:
        max_nodes: node budget per step; wider trees catch more continuations but make
            every verification forward dearer.
        max_depth: deepest draft node (tokens); must be < ``branch_length``.
        max_match: longest context matched (tokens); longer contexts predict better but
            match less often.
        branch_length: tokens per inserted window (context + continuation).
        min_prob: continuations below this estimated probability (fraction 0-1) are not
            drafted; higher = smaller, safer trees.
        pseudo_count: occurrences added to every context's total as mass for unseen
            continuations; higher = less trust in contexts seen only a few times.
        shorter_match_weight: factor applied to probabilities from each shorter context
            (fraction 0-1); 0 uses only the longest matching context.
        capacity: node bound of a trie (request and shared).
        trie: a shared :class:`TokenTrie` read by every request (never copied).
        path: load the shared trie from this file (written by ``TokenTrie.save``).
        corpus: a datastore file (``hasten datastore build``) whose documents warm up the
            shared trie.
        learn: add each request's output to the shared trie (only with one of the three
            above); the output never changes, later requests may draft better.

    Raises:
        ValueError: a non-positive size, ``max_depth >= branch_length``, ``max_match >=
            branch_length``, a probability outside [0, 1], or both ``trie`` and ``path``.
    """

    max_nodes: int = 8
    max_depth: int = 6
    max_match: int = 4
    branch_length: int = 8
    min_prob: float = 0.1
    pseudo_count: float = 1.0
    shorter_match_weight: float = 0.5
    capacity: int = 200_000
    trie: TokenTrie | None = field(default=None, compare=False, repr=False)
    path: str | None = None
    corpus: str | None = None
    learn: bool = True

    def __post_init__(self) -> None:
        for name in ("max_nodes", "max_depth", "max_match", "branch_length", "capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_depth >= self.branch_length or self.max_match >= self.branch_length:
            raise ValueError(
                f"max_depth ({self.max_depth}) and max_match ({self.max_match}) must be "
                f"< branch_length ({self.branch_length})"
            )
        if self.pseudo_count < 0:
            raise ValueError(f"pseudo_count must be >= 0, got {self.pseudo_count}")
        if self.trie is not None and self.path is not None:
            raise ValueError("give either trie= or path=, not both")
        for name in ("min_prob", "shorter_match_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def retrieve(trie: TokenTrie, tokens: list[int], config: TrieConfig) -> dict[tuple[int, ...], float]:
    """Scored continuations for ``tokens`` from one trie: the longest matching context
    first, then each shorter one at ``shorter_match_weight`` per step, up to the budget.

    Example: a trie fed [1, 2, 3, 9, 2, 4] (branch_length 8, pseudo_count 0), tokens
    [7, 1, 2] -> context [1, 2] gives (3,), (3, 9), (3, 9, 2), (3, 9, 2, 4) at 1.0;
    context [2] adds (4,) at 0.5 * 1/2 = 0.25.
    """
    scores: dict[tuple[int, ...], float] = {}
    weight = 1.0
    for k in range(min(config.max_match, len(tokens)), 0, -1):
        if weight <= 0 or len(scores) >= config.max_nodes:
            break
        node = trie.find(tokens[-k:])
        if node is None or not node[_CHILDREN]:
            continue
        found = trie.best_paths(node, config.max_nodes, config.max_depth, config.min_prob / weight, config.pseudo_count)
        merge_max(scores, found, weight)
        weight *= config.shorter_match_weight
    return scores


class TrieDrafter(Drafter):
    """Drafts multi-branch trees retrieved from token tries (see module docstring)."""

    name = "trie"

    def __init__(self, config: TrieConfig = TrieConfig()):
        self.config = config
        self.shared = config.trie
        if config.path is not None:
            self.shared = TokenTrie.load(config.path, capacity=config.capacity)
        if config.corpus is not None:
            from ..datastore import Datastore

            if self.shared is None:
                self.shared = TokenTrie(config.capacity)
            feeder = TrieFeeder(self.shared, config.branch_length)
            for document in Datastore.load(config.corpus).sequences():
                feeder.feed(document)
                feeder.end_document()

    def begin(self, request) -> None:
        super().begin(request)
        config = self.config
        self.local = TokenTrie(config.capacity)
        self.local_feeder = TrieFeeder(self.local, config.branch_length)
        self.local_feeder.feed(request.prompt_ids)
        self.shared_feeder = None
        if self.shared is not None and config.learn:
            # the prompt's last tokens start the first learned windows (e.g. the chat
            # template's assistant header -> how answers begin)
            self.shared_feeder = TrieFeeder(self.shared, config.branch_length)
            self.shared_feeder.feed(request.prompt_ids[-config.max_match :])
        self.fed = len(request.prompt_ids)
        self.lookups = self.hits = 0

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        new = tokens[self.fed :]
        self.local_feeder.feed(new)
        if self.shared_feeder is not None:
            self.shared_feeder.feed(new)
        self.fed = len(tokens)
        self.lookups += 1
        scores = retrieve(self.local, tokens, self.config)
        if self.shared is not None:
            merge_max(scores, retrieve(self.shared, tokens, self.config))
        tree = tree_from_scores(scores, self.config.max_nodes, self.config.min_prob)
        if tree is not None:
            self.hits += 1
        return tree

    def stats(self) -> dict:
        out = {"lookups": self.lookups, "matches": self.hits, "request_trie_nodes": self.local.size}
        if self.shared is not None:
            out.update(shared_trie_nodes=self.shared.size, shared_trie_evicted=self.shared.evicted)
        return out


register(
    MethodSpec(
        "trie",
        TrieConfig,
        TrieDrafter,
        "multi-branch retrieval from a frequency-weighted token trie (Lookahead, arXiv 2312.12728)",
    )
)
