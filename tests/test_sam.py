"""The suffix automaton against a brute-force longest-earlier-suffix search."""

import random

import pytest

from hasten.sam import SuffixAutomaton, longest_earlier_match_reference


def test_hand_example():
    # text 5 6 5 6 5: the suffix 5 6 5 also ends at index 2; the continuation after it is 6 5
    sam = SuffixAutomaton([5, 6, 5, 6, 5])
    assert sam.longest_earlier_match() == (3, 2)
    assert sam.continuation(5) == [6, 5]
    assert SuffixAutomaton([]).longest_earlier_match() == (0, -1)
    assert SuffixAutomaton([4]).continuation(3) == []


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alphabet", [2, 3, 5, 20])
def test_every_prefix_matches_brute_force(seed, alphabet):
    rng = random.Random(seed * 100 + alphabet)
    tokens = [rng.randrange(alphabet) for _ in range(rng.randint(1, 160))]
    sam = SuffixAutomaton()
    for i, token in enumerate(tokens):
        sam.extend(token)
        assert sam.longest_earlier_match() == longest_earlier_match_reference(tokens[: i + 1]), i


def test_state_count_is_linear():
    rng = random.Random(0)
    tokens = [rng.randrange(4) for _ in range(2000)]
    sam = SuffixAutomaton(tokens)
    assert len(sam.length) <= 2 * len(tokens)
    assert sum(len(t) for t in sam.next) <= 3 * len(tokens)


def test_reference_negative_control():
    """The reference is not trivially agreeable: a wrong answer differs from it."""
    assert longest_earlier_match_reference([1, 2, 1, 2]) == (2, 1)
    assert longest_earlier_match_reference([1, 2, 3]) == (0, -1)
