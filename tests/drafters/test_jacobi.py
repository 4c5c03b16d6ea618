"""Jacobi lookahead: n-gram pool, window n-grams and the window shift, on literal inputs."""

import pytest
import torch

import hasten
from hasten.drafters import DraftRequest, VerifiedStep
from hasten.drafters.jacobi import JacobiConfig, JacobiDrafter, NgramPool, window_ngrams
from hasten.sampling import SamplingParams
from hasten.tree import DraftTree


def test_pool_keeps_most_recent_per_key():
    pool = NgramPool(per_key=2)
    for ngram in [(1, 2, 3), (1, 4, 5), (1, 2, 3), (1, 6, 7), (9, 9, 9)]:
        pool.add(ngram)
    assert pool.candidates(1, 2) == [(6, 7), (2, 3)]
    assert pool.candidates(1, 1) == [(6, 7)]
    assert pool.candidates(9, 5) == [(9, 9)]
    assert pool.candidates(4, 3) == [] and pool.candidates(1, 0) == []
    assert len(pool) == 3


def test_window_ngrams_literal():
    assert window_ngrams([1, 2], [3, 4], [9, 8, 7], n=3) == [(2, 3, 8), (3, 4, 7)]
    assert window_ngrams([5], [6, 7], [0, 1, 2], n=4) == [(5, 6, 7, 2)]  # row 1 saw only 2 tokens
    assert window_ngrams([1, 2, 3], [], [4], n=2) == []


def _drafter(prompt, **options):
    drafter = JacobiDrafter(JacobiConfig(**options))
    drafter.begin(DraftRequest(prompt, None, SamplingParams(), torch.Generator(), 100))
    return drafter


def _step(tokens, draft, accepted, row_tokens):
    scores = torch.zeros(len(draft) + 1, 100)
    return VerifiedStep(tokens, draft, accepted, row_tokens[accepted[-1] + 1 if accepted else 0], row_tokens, scores)


def test_window_iterates_and_feeds_the_pool():
    drafter = _drafter([1, 2, 3, 4], window=3, ngram=3, candidates=1, seed_from_context=False)
    drafter.window = [7, 8, 9]
    tokens = [1, 2, 3, 4]
    draft = drafter.propose(tokens, 10)
    assert (draft.tokens, draft.parents) == ((7, 8, 9), (-1, 0, 1))  # empty pool: the window alone
    # the target agrees with 7, then says 5 (not 8); its tokens after 8 and 9 are 6 and 11
    tokens += [7, 5]
    drafter.on_accept(_step(tokens, draft, [0], [7, 5, 6, 11]))
    assert drafter.pool.candidates(4, 5) == [(7, 5)]
    assert drafter.pool.candidates(7, 5) == [(8, 6)]
    assert drafter.pool.candidates(8, 5) == [(9, 11)]
    assert drafter.window == [6, 11]  # iterates for the positions after the bonus token 5
    nxt = drafter.propose(tokens, 10)
    assert nxt.tokens[:2] == (6, 11) and len(nxt) == 3  # topped up to W


def test_candidates_come_first_and_share_prefixes_with_the_window():
    drafter = _drafter([1, 2, 3, 4, 5, 6, 4, 5, 9], window=2, ngram=3, candidates=2)
    drafter.window = [5, 8]
    draft = drafter.propose([1, 2, 3, 4, 5, 6, 4, 5, 9, 4], 10)
    # pool for root 4: (5, 9) most recent, then (5, 6); the window 5 -> 8 shares the 5
    assert draft.tokens == (5, 9, 6, 8)
    assert draft.parents == (-1, 0, 0, 0)


def test_window_cut_by_the_engine_restarts():
    drafter = _drafter([1, 2, 3], window=3, ngram=2, candidates=0, seed_from_context=False)
    drafter.window = [7, 8, 9]
    draft = drafter.propose([1, 2, 3], 10)
    cut = DraftTree.chain([7])  # the engine kept one node
    drafter.on_accept(_step([1, 2, 3, 4], cut, [], [4, 6]))
    # only 7's row came back: its iterate 6 is for the position after the bonus token 4;
    # 8 and 9 were never verified, so they are neither harvested nor kept
    assert len(draft) == 3
    assert drafter.window == [6]
    assert drafter.pool.candidates(7, 1) == [(6,)]
    assert drafter.pool.candidates(8, 1) == [] and drafter.pool.candidates(3, 1) == []


def test_config_validation():
    for bad in ({"window": 0}, {"ngram": 1}, {"candidates": -1}, {"pool_size": 0}):
        with pytest.raises(ValueError):
            JacobiConfig(**bad)


def test_jacobi_iterates_alone_get_tokens_accepted(tiny_factory):
    """With no n-grams from the context, every accepted token came from a window or from an
    n-gram that Jacobi iteration produced."""
    from conftest import exactness_prompts

    model = tiny_factory("llama")
    accepted = 0
    for prompt in exactness_prompts()[:10]:
        ref = hasten.generate(model, prompt, max_new_tokens=24).sequences[0].tolist()
        result = hasten.generate(
            model, prompt, method="jacobi", max_new_tokens=24, method_options={"seed_from_context": False, "window": 5}
        )
        assert result.sequences[0].tolist() == ref
        accepted += sum(result.stats.accepted)
    assert accepted > 0


def test_window_shifts_when_the_engine_verified_nothing():
    drafter = _drafter([1, 2, 3], window=3, ngram=2, candidates=0, seed_from_context=False)
    drafter.window = [7, 8, 9]
    drafter.propose([1, 2, 3], 10)
    # the engine cut the draft to nothing and took a plain step (no on_accept): the guess
    # for the position now holding the new token is dropped, the rest move up
    nxt = drafter.propose([1, 2, 3, 4], 10)
    assert nxt.tokens[:2] == (8, 9) and len(nxt) == 3
