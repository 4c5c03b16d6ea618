"""Pure n-gram / suffix indexes over token lists, shared by the retrieval drafters
(prompt_lookup, hierarchical, suffix). Each index has a brute-force reference beside it
(:func:`latest_match_reference`, :func:`match_reference`); tests/test_ngram.py checks
them against each other on literal token lists.

Terms: an n-gram *ends* at position e when it is ``tokens[e - n + 1 : e + 1]``; only ends
with a successor (``e < len(tokens) - 1``) are indexed; the *continuation* of a match is
what followed it.
"""

from __future__ import annotations

__all__ = ["NgramIndex", "SuffixIndex", "continuation", "latest_match_reference", "match_reference"]


def continuation(tokens: list[int], match_end: int, length: int) -> list[int]:
    """The ``length`` tokens that would follow if the text repeats from ``match_end + 1``.

    Example: tokens [1, 2, 3, 1, 2], match_end 1 (the earlier "1 2"), length 4 ->
    [3, 1, 2, 3]: the copy runs into the suffix and continues with period 3.
    """
    out = list(tokens[match_end + 1 : match_end + 1 + length])  # O(length), not O(len(tokens))
    period = len(tokens) - match_end - 1
    while len(out) < length:
        out.append(out[len(out) - period])
    return out


class NgramIndex:
    """Latest earlier occurrence of every n-gram of a token list that grows and shrinks
    (committed tokens followed by speculative ones that may be rolled back).

    Example: sync([1, 2, 3, 1, 2]) then lookup([1, 2, 3, 1, 2], 3) -> [3, 1, 2]
    (the earlier "1 2" was followed by 3, and the copy runs on periodically).
    """

    def __init__(self, min_n: int, max_n: int):
        self.min_n, self.max_n = min_n, max_n
        self.tokens: list[int] = []
        self.table: dict[tuple[int, ...], list[int]] = {}  # n-gram -> ends (ascending) that have a successor
        self.log: list[list[tuple[int, ...]]] = []  # per end: the n-grams recorded there

    def sync(self, tokens: list[int]) -> None:
        """Index ``tokens``: entries whose n-gram or successor changed are dropped first."""
        common = len(self.tokens) if tokens[: len(self.tokens)] == self.tokens else 0
        if not common:
            limit = min(len(tokens), len(self.tokens))
            while common < limit and tokens[common] == self.tokens[common]:
                common += 1
        keep = max(0, common - 1)  # end e stays valid while tokens[e + 1] is unchanged
        while len(self.log) > keep:
            for key in self.log.pop():
                ends = self.table[key]
                ends.pop()
                if not ends:
                    del self.table[key]
        for end in range(len(self.log), len(tokens) - 1):
            keys = [tuple(tokens[end + 1 - n : end + 1]) for n in range(self.min_n, self.max_n + 1) if end + 1 >= n]
            for key in keys:
                self.table.setdefault(key, []).append(end)
            self.log.append(keys)
        self.tokens = list(tokens)

    def lookup(self, tokens: list[int], length: int) -> list[int]:
        """Up to ``length`` tokens following the longest (then latest) earlier match of the
        suffix of ``tokens`` (the list last passed to :meth:`sync`); [] if none."""
        for n in range(self.max_n, self.min_n - 1, -1):
            ends = self.table.get(tuple(tokens[-n:])) if len(tokens) > n else None
            if ends:
                return continuation(tokens, ends[-1], length)
        return []


def latest_match_reference(tokens: list[int], min_n: int, max_n: int, length: int) -> list[int]:
    """Slow reference for :meth:`NgramIndex.lookup`: scan for the longest n (``max_n`` down to
    ``min_n``) whose suffix n-gram occurred earlier with a successor, take its latest such end,
    and return its ``length``-token :func:`continuation`; [] if none.

    >>> latest_match_reference([1, 2, 3, 1, 2], 1, 3, 3)
    [3, 1, 2]
    """
    for n in range(max_n, min_n - 1, -1):
        if len(tokens) <= n:
            continue
        suffix = tokens[-n:]
        for end in range(len(tokens) - 2, n - 2, -1):
            if tokens[end - n + 1 : end + 1] == suffix:
                return continuation(tokens, end, length)
    return []


class SuffixIndex:
    """Occurrences of every n-gram (n <= ``ngram``) of a growing token list.

    Each end position is indexed once it has a successor, so ``extend`` costs O(ngram)
    dictionary operations per new token and a lookup never scans the context.

    Example: extend([1, 2, 3, 1, 2]) then match([1, 2, 3, 1, 2], max_match=8,
    max_occurrences=4) -> [(1, 2)]: "1 2" ended at position 1 before, match length 2.
    """

    def __init__(self, ngram: int):
        self.ngram = ngram
        self.tables: list[dict[tuple[int, ...], list[int]]] = [{} for _ in range(ngram + 1)]
        self.indexed = 0  # end positions < indexed are in the tables

    def extend(self, tokens: list[int]) -> None:
        for end in range(self.indexed, len(tokens) - 1):
            for n in range(1, min(self.ngram, end + 1) + 1):
                self.tables[n].setdefault(tuple(tokens[end + 1 - n : end + 1]), []).append(end)
        self.indexed = max(self.indexed, len(tokens) - 1)

    def match(self, tokens: list[int], max_match: int, max_occurrences: int) -> list[tuple[int, int]]:
        """Occurrences of the longest indexed suffix of ``tokens``: (end position, match
        length) for its ``max_occurrences`` most recent ends, each match extended
        backwards up to ``max_match`` tokens. Empty when the last token never occurred."""
        last = len(tokens) - 1
        for n in range(min(self.ngram, len(tokens) - 1), 0, -1):
            ends = self.tables[n].get(tuple(tokens[-n:]))
            if ends:
                break
        else:
            return []
        out = []
        for end in ends[-max_occurrences:]:
            length = n
            while length < max_match and end - length >= 0 and tokens[end - length] == tokens[last - length]:
                length += 1
            out.append((end, length))
        return out


def match_reference(tokens: list[int], max_match: int) -> dict[int, int]:
    """Slow reference for :meth:`SuffixIndex.match`: for every earlier end position, the
    length of the longest common suffix of ``tokens[:end + 1]`` and ``tokens`` (capped at
    ``max_match``), by brute force; positions with length 0 are left out.

    Example: [1, 2, 3, 2, 1, 2], max_match 8 -> {1: 2, 3: 1}.
    """
    out = {}
    for end in range(len(tokens) - 1):
        length = 0
        while length < max_match and end - length >= 0 and tokens[end - length] == tokens[-1 - length]:
            length += 1
        if length:
            out[end] = length
    return out
