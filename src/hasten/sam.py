"""A suffix automaton over a growing token sequence: the longest earlier match in O(1).

SAM-Decoding (Hu et al., "SAM Decoding: Speculative Decoding via Suffix Automaton",
arXiv 2411.10666) drafts the continuation of the longest suffix of the text that also
occurred earlier in it. A suffix automaton answers that exactly: extending it by one token
is amortized O(1) (Blumer et al.'s online construction), and after each extension the
suffix link of the state for the whole text is the longest suffix that occurs at least
twice, so the query is O(1) too, with no scan that grows with the context.

Terms: a *state* groups the substrings that end at the same set of positions; ``length``
is the longest of them; ``link`` is the state of the longest suffix that ends at more
positions; ``first_end`` is the index of the last token of a state's first occurrence.

Example::

    >>> sam = SuffixAutomaton([1, 2, 3, 9, 1, 2])
    >>> sam.longest_earlier_match()          # [1, 2] ended earlier at index 1
    (2, 1)
    >>> sam.continuation(3)                  # what followed that earlier [1, 2]
    [3, 9, 1]
    >>> sam.extend(7); sam.longest_earlier_match()
    (0, -1)
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SuffixAutomaton", "longest_earlier_match_reference"]


class SuffixAutomaton:
    """Online suffix automaton of ``tokens`` (ints), extended with :meth:`extend`.

    Memory: at most 2n states and 3n transitions for n tokens (one dict per state).
    """

    def __init__(self, tokens: Iterable[int] = ()) -> None:
        self.tokens: list[int] = []
        self.length = [0]
        self.link = [-1]
        self.first_end = [-1]
        self.next: list[dict[int, int]] = [{}]
        self.last = 0
        for token in tokens:
            self.extend(token)

    def _new_state(self, length: int, link: int, first_end: int, transitions: dict[int, int]) -> int:
        self.length.append(length)
        self.link.append(link)
        self.first_end.append(first_end)
        self.next.append(transitions)
        return len(self.length) - 1

    def extend(self, token: int) -> None:
        """Append one token (amortized O(1))."""
        token = int(token)
        end = len(self.tokens)
        self.tokens.append(token)
        cur = self._new_state(self.length[self.last] + 1, 0, end, {})
        p = self.last
        while p != -1 and token not in self.next[p]:
            self.next[p][token] = cur
            p = self.link[p]
        if p != -1:
            q = self.next[p][token]
            if self.length[p] + 1 == self.length[q]:
                self.link[cur] = q
            else:
                clone = self._new_state(self.length[p] + 1, self.link[q], self.first_end[q], dict(self.next[q]))
                while p != -1 and self.next[p].get(token) == q:
                    self.next[p][token] = clone
                    p = self.link[p]
                self.link[q] = clone
                self.link[cur] = clone
        self.last = cur

    def longest_earlier_match(self) -> tuple[int, int]:
        """``(match_length, end)``: the longest suffix of the text that also ends at an earlier
        index, and the index of its first such end (``(0, -1)`` when no token repeats)."""
        state = self.link[self.last]
        if state <= 0:
            return 0, -1
        return self.length[state], self.first_end[state]

    def continuation(self, max_tokens: int) -> list[int]:
        """Up to ``max_tokens`` tokens that followed the longest earlier match (a draft chain)."""
        length, end = self.longest_earlier_match()
        if length == 0 or max_tokens < 1:
            return []
        return self.tokens[end + 1 : end + 1 + max_tokens]


def longest_earlier_match_reference(tokens: list[int]) -> tuple[int, int]:
    """Brute force of :meth:`SuffixAutomaton.longest_earlier_match` (O(n^2) per query):
    the longest L with ``tokens[n-L:] == tokens[e-L+1:e+1]`` for some e < n - 1, and the
    smallest such e."""
    n = len(tokens)
    for size in range(n - 1, 0, -1):
        suffix = tokens[n - size :]
        for end in range(size - 1, n - 1):
            if tokens[end - size + 1 : end + 1] == suffix:
                return size, end
    return 0, -1
