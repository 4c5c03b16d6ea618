"""Suffix automata over token sequences: exact longest-suffix matching in amortized O(1)
per token, for retrieval drafting.

A suffix automaton (Blumer et al. 1985) of a sequence S is the smallest automaton that
accepts every substring of S. Each state stands for a set of substrings that share their
end positions in S; ``length[v]`` is the longest of them and ``link[v]`` the state of the
longest suffix that ends at more positions. Appending a token adds at most two states and
costs amortized O(1) dictionary operations, so the automaton of a request grows with it
at a constant cost per committed token.

This is the retrieval structure of SAM-Decoding (Hu et al., "SAM Decoding: Speculative
Decoding via Suffix Automaton", arXiv 2411.10666): after each token,

- :class:`SuffixAutomaton` reports the longest suffix of the sequence that also ends at an
  earlier position (the state the new token's suffix link points to, found by the
  construction itself, no scan), with earlier end positions to copy a continuation from;
- :class:`SuffixMatcher` follows a token stream through the automaton of *another* text
  (earlier requests' outputs, a predicted output) and keeps the longest suffix of the
  stream that occurs in that text, also in amortized O(1) per token.

Both are pure (token lists in, integers out); :func:`longest_earlier_suffix_reference` and
:func:`longest_suffix_in_reference` are the brute-force references the tests compare to.

Terms: an *end position* e of a match of length L means ``text[e - L + 1 : e + 1]`` equals
the matched suffix; *earlier* means e < the sequence's last index, so the token after the
occurrence (``text[e + 1]``) is known and can be drafted.
"""

from __future__ import annotations

__all__ = [
    "SuffixAutomaton",
    "SuffixMatcher",
    "longest_earlier_suffix_reference",
    "longest_suffix_in_reference",
]


class SuffixAutomaton:
    """The suffix automaton of a growing token sequence.

    After every :meth:`extend`, ``match_length`` is the length of the longest suffix of the
    sequence that also ends at an earlier position, and ``match_ends()`` gives earlier end
    positions of it: the first one, and the latest one at which that state was the match
    (the most recent of its occurrences the automaton has seen as a match; cheaper than
    the true latest, which would need a walk up the suffix links).

    Tokens are any hashable ints; a separator that never occurs elsewhere (e.g. -1)
    keeps matches from spanning documents.

    Example: extend 1, 2, 3, 1, 2 -> match_length 2 ("1 2"), match_ends() [1]
    (it ended at position 1 before; the draft continues with tokens[2] = 3).
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.length: list[int] = [0]  # per state: longest substring length
        self.link: list[int] = [-1]  # per state: suffix link
        self.first: list[int] = [-1]  # per state: first end position
        self.recent: list[int] = [-1]  # per state: latest end position recorded for it
        self.next: list[dict[int, int]] = [{}]  # per state: token -> state
        self.last = 0  # state of the whole sequence
        self.match_state = 0  # state of the longest earlier-occurring suffix
        self.previous_end = -1  # the match state's latest recorded end before this token

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def num_states(self) -> int:
        return len(self.length)

    @property
    def match_length(self) -> int:
        """Length of the longest suffix that ends at an earlier position (0: none)."""
        return self.length[self.match_state]

    def _new_state(self, length: int, link: int, first: int, recent: int, nxt: dict[int, int]) -> int:
        self.length.append(length)
        self.link.append(link)
        self.first.append(first)
        self.recent.append(recent)
        self.next.append(nxt)
        return len(self.length) - 1

    def extend(self, token: int) -> int:
        """Append ``token``; returns the new ``match_length``."""
        pos = len(self.tokens)
        self.tokens.append(token)
        cur = self._new_state(self.length[self.last] + 1, 0, pos, pos, {})
        p = self.last
        while p != -1 and token not in self.next[p]:
            self.next[p][token] = cur
            p = self.link[p]
        if p != -1:
            q = self.next[p][token]
            if self.length[p] + 1 == self.length[q]:
                self.link[cur] = q
            else:
                clone = self._new_state(
                    self.length[p] + 1, self.link[q], self.first[q], self.recent[q], dict(self.next[q])
                )
                while p != -1 and self.next[p].get(token) == q:
                    self.next[p][token] = clone
                    p = self.link[p]
                self.link[q] = self.link[cur] = clone
        self.last = cur
        self.match_state = self.link[cur]
        self.previous_end = self.recent[self.match_state]
        if self.match_state > 0:
            self.recent[self.match_state] = pos
        return self.match_length

    def extend_all(self, tokens) -> int:
        """Append every token of ``tokens``; returns the final ``match_length``."""
        for token in tokens:
            self.extend(int(token))
        return self.match_length

    def match_ends(self) -> list[int]:
        """Earlier end positions of the current match, first occurrence first (at most two,
        distinct); empty when ``match_length`` is 0."""
        if self.match_state <= 0:
            return []
        first, latest = self.first[self.match_state], self.previous_end
        return [first] if latest == first or latest < 0 else [first, latest]

    def continuation(self, end: int, length: int, stop: int | None = None) -> list[int]:
        """Up to ``length`` tokens after end position ``end``, cut before a ``stop`` token;
        a copy that runs into the end of the sequence continues periodically (the text
        repeating itself), as :func:`hasten.ngram.continuation` does.

        Example: tokens [1, 2, 3, 1, 2], end 1, length 4 -> [3, 1, 2, 3].
        """
        tokens = self.tokens
        out = tokens[end + 1 : end + 1 + length]
        period = len(tokens) - end - 1
        while len(out) < length and period > 0:
            out.append(out[len(out) - period])
        if stop is not None and stop in out:
            out = out[: out.index(stop)]
        return out


class SuffixMatcher:
    """The longest suffix of a token stream that occurs in a :class:`SuffixAutomaton`'s text.

    ``feed(token)`` follows the stream: amortized O(1) per token (each token adds one to
    the match length at most, and every suffix-link step removes at least one).

    Example: automaton of [5, 6, 7, -1, 6, 7, 8]; feed 9, 6, 7 -> length 2, ends [2]
    (the earliest "6 7" ends at position 2).
    """

    def __init__(self, automaton: SuffixAutomaton):
        self.automaton = automaton
        self.state = 0
        self.length = 0

    def reset(self) -> None:
        self.state, self.length = 0, 0

    def feed(self, token: int) -> int:
        """Advance by ``token``; returns the new match length."""
        sam = self.automaton
        state, length = self.state, self.length
        while state > 0 and token not in sam.next[state]:
            state = sam.link[state]
            length = sam.length[state]
        nxt = sam.next[state].get(token)
        if nxt is None:
            state, length = 0, 0
        else:
            state, length = nxt, length + 1
        self.state, self.length = state, length
        return length

    def feed_all(self, tokens) -> int:
        for token in tokens:
            self.feed(int(token))
        return self.length

    def ends(self) -> list[int]:
        """End positions in the automaton's text of the current match (first, then the
        latest recorded, distinct); empty when ``length`` is 0."""
        if self.length == 0:
            return []
        sam = self.automaton
        first, latest = sam.first[self.state], sam.recent[self.state]
        return [first] if latest == first or latest < 0 else [first, latest]


def longest_earlier_suffix_reference(tokens: list[int]) -> tuple[int, set[int]]:
    """Brute force for :class:`SuffixAutomaton`: the length L of the longest suffix of
    ``tokens`` that also ends at an earlier position, and every such earlier end position.

    >>> longest_earlier_suffix_reference([1, 2, 3, 1, 2])
    (2, {1})
    """
    n = len(tokens)
    for length in range(n - 1, 0, -1):
        suffix = tokens[n - length :]
        ends = {e for e in range(length - 1, n - 1) if tokens[e - length + 1 : e + 1] == suffix}
        if ends:
            return length, ends
    return 0, set()


def longest_suffix_in_reference(stream: list[int], text: list[int]) -> tuple[int, set[int]]:
    """Brute force for :class:`SuffixMatcher`: the length L of the longest suffix of
    ``stream`` that occurs in ``text``, and all its end positions in ``text``.

    >>> longest_suffix_in_reference([9, 6, 7], [5, 6, 7, -1, 6, 7, 8])
    (2, {2, 5})
    """
    for length in range(min(len(stream), len(text)), 0, -1):
        suffix = stream[len(stream) - length :]
        ends = {e for e in range(length - 1, len(text)) if text[e - length + 1 : e + 1] == suffix}
        if ends:
            return length, ends
    return 0, set()
