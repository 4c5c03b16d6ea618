"""hasten.ngram: the shared n-gram / suffix indexes against brute-force references, on
literal token lists (expected values by hand) and random lists (fast == reference)."""

import random

import pytest

from hasten.ngram import NgramIndex, SuffixIndex, continuation, latest_match_reference, match_reference


def test_continuation_by_hand():
    assert continuation([1, 2, 3, 1, 2], 1, 4) == [3, 1, 2, 3]  # runs into the suffix, period 3
    assert continuation([5, 6, 7, 8], 0, 2) == [6, 7]
    assert continuation([4, 4], 0, 3) == [4, 4, 4]


def test_references_by_hand():
    assert latest_match_reference([1, 2, 3, 1, 2], 1, 3, 3) == [3, 1, 2]
    assert latest_match_reference([1, 2, 9, 2, 7, 2], 1, 3, 2) == [7, 2]  # latest "2" with a successor: end 3
    assert latest_match_reference([1, 2, 3], 1, 2, 2) == []
    assert match_reference([1, 2, 3, 2, 1, 2], 8) == {1: 2, 3: 1}


def test_ngram_index_by_hand_with_rollback():
    index = NgramIndex(1, 3)
    index.sync([1, 2, 3, 1, 2])
    assert index.lookup([1, 2, 3, 1, 2], 3) == [3, 1, 2]
    index.sync([1, 2, 3, 1, 9])  # the last token changed (a rejected speculative token)
    assert index.lookup([1, 2, 3, 1, 9], 3) == []
    index.sync([1, 2, 3, 1])
    assert index.lookup([1, 2, 3, 1], 2) == [2, 3]


@pytest.mark.parametrize("seed", range(20))
def test_ngram_index_matches_the_reference(seed):
    rng = random.Random(seed)
    index = NgramIndex(1, 3)
    tokens: list[int] = []
    for _ in range(60):
        if tokens and rng.random() < 0.3:
            tokens = tokens[: rng.randrange(len(tokens))]  # roll back
        else:
            tokens = tokens + [rng.randrange(4) for _ in range(rng.randrange(1, 4))]
        index.sync(tokens)
        assert index.lookup(tokens, 5) == latest_match_reference(tokens, 1, 3, 5), tokens


@pytest.mark.parametrize("seed", range(20))
def test_suffix_index_matches_the_reference(seed):
    rng = random.Random(seed)
    tokens = [rng.randrange(3) for _ in range(40)]
    index = SuffixIndex(4)
    for cut in range(2, len(tokens) + 1):
        prefix = tokens[:cut]
        index.extend(prefix)
        got = index.match(prefix, max_match=6, max_occurrences=100)
        expected = match_reference(prefix, 6)
        # the index reports every end of the longest indexed suffix (length >= that n-gram)
        if not got:
            assert not expected
            continue
        assert all(expected.get(end) == length for end, length in got), prefix
        n = min(length for _, length in got)
        assert {end for end, _ in got} == {e for e, length in expected.items() if length >= min(n, 4)}, prefix
