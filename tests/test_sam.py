"""The suffix automaton (hasten.sam) against brute-force longest-suffix searches."""

from __future__ import annotations

import random

import pytest

from hasten.ngram import continuation as ngram_continuation
from hasten.sam import (
    SuffixAutomaton,
    SuffixMatcher,
    longest_earlier_suffix_reference,
    longest_suffix_in_reference,
)


def test_literal_example():
    sam = SuffixAutomaton()
    lengths = [sam.extend(t) for t in [1, 2, 3, 1, 2]]
    assert lengths == [0, 0, 0, 1, 2]
    assert sam.match_ends() == [1]
    assert sam.continuation(1, 4) == [3, 1, 2, 3]  # runs into the suffix: periodic


def test_references_on_literal_cases():
    assert longest_earlier_suffix_reference([1, 2, 3, 1, 2]) == (2, {1})
    assert longest_earlier_suffix_reference([1, 1, 1]) == (2, {1})
    assert longest_earlier_suffix_reference([4, 5]) == (0, set())
    assert longest_suffix_in_reference([9, 6, 7], [5, 6, 7, -1, 6, 7, 8]) == (2, {2, 5})


@pytest.mark.parametrize("alphabet", [2, 3, 8, 50])
def test_automaton_equals_brute_force_on_random_strings(alphabet):
    rng = random.Random(alphabet)
    for _ in range(20):
        tokens = [rng.randrange(alphabet) for _ in range(rng.randrange(1, 80))]
        sam = SuffixAutomaton()
        for i, token in enumerate(tokens):
            length = sam.extend(token)
            ref_length, ref_ends = longest_earlier_suffix_reference(tokens[: i + 1])
            assert length == ref_length, (tokens[: i + 1], length, ref_length)
            ends = sam.match_ends()
            assert set(ends) <= ref_ends and (bool(ends) == bool(ref_ends))
            if ref_ends:
                assert ends[0] == min(ref_ends)  # the first occurrence is exact


def test_automaton_state_bound_and_structure():
    rng = random.Random(0)
    tokens = [rng.randrange(4) for _ in range(500)]
    sam = SuffixAutomaton()
    sam.extend_all(tokens)
    assert sam.num_states <= 2 * len(tokens)  # the classic bound 2n - 1 (n >= 2)
    # every state's `first` end position does end an occurrence of its longest string
    for state in range(1, sam.num_states):
        # walk back from `first` through the string: it must be accepted from the start state
        end, length = sam.first[state], sam.length[state]
        s = 0
        for token in tokens[end - length + 1 : end + 1]:
            s = sam.next[s][token]
        assert s == state


def test_matcher_equals_brute_force_on_random_streams():
    rng = random.Random(1)
    for _ in range(30):
        docs = [[rng.randrange(5) for _ in range(rng.randrange(1, 20))] for _ in range(rng.randrange(1, 4))]
        text = []
        for doc in docs:
            text += doc + [-1]
        sam = SuffixAutomaton()
        sam.extend_all(text)
        matcher = SuffixMatcher(sam)
        stream = [rng.randrange(6) for _ in range(60)]  # token 5 never occurs in the text
        for i, token in enumerate(stream):
            length = matcher.feed(token)
            ref_length, ref_ends = longest_suffix_in_reference(stream[: i + 1], text)
            assert length == ref_length
            ends = matcher.ends()
            assert set(ends) <= ref_ends and bool(ends) == bool(ref_ends)


def test_continuation_equals_ngram_continuation_and_stops_at_separator():
    rng = random.Random(2)
    for _ in range(50):
        tokens = [rng.randrange(4) for _ in range(rng.randrange(2, 30))]
        sam = SuffixAutomaton()
        sam.extend_all(tokens)
        end = rng.randrange(len(tokens) - 1)
        assert sam.continuation(end, 7) == ngram_continuation(tokens, end, 7)
    sam = SuffixAutomaton()
    sam.extend_all([5, 6, 7, -1, 8])
    assert sam.continuation(0, 5, stop=-1) == [6, 7]


def test_negative_control_a_broken_link_is_caught():
    """The brute-force comparison detects an automaton that forgets to clone states."""

    class NoClone(SuffixAutomaton):
        def extend(self, token):
            pos = len(self.tokens)
            self.tokens.append(token)
            cur = self._new_state(self.length[self.last] + 1, 0, pos, pos, {})
            p = self.last
            while p != -1 and token not in self.next[p]:
                self.next[p][token] = cur
                p = self.link[p]
            if p != -1:
                self.link[cur] = self.next[p][token]  # wrong when length[p] + 1 < length[q]
            self.last = cur
            self.match_state = self.link[cur]
            return self.match_length

    rng = random.Random(3)
    mismatches = 0
    for _ in range(20):
        tokens = [rng.randrange(2) for _ in range(40)]
        sam = NoClone()
        for i, token in enumerate(tokens):
            if sam.extend(token) != longest_earlier_suffix_reference(tokens[: i + 1])[0]:
                mismatches += 1
    assert mismatches > 0
