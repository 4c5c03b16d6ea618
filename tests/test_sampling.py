"""Logits processing against transformers' own processors (an independent implementation)."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from hasten.sampling import PositionDraws, SamplingParams, choose_tokens, presence_rows, process_logits


def hf_process(logits, history, params):
    procs = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.do_sample:
        if params.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            procs.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            procs.append(TopPLogitsWarper(params.top_p))
    return procs(torch.tensor([history]), logits.clone())


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(),
        SamplingParams(repetition_penalty=1.3),
        SamplingParams(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.3),
        SamplingParams(do_sample=True, top_k=5),
        SamplingParams(do_sample=True, temperature=1.7, top_k=20, top_p=0.5),
        SamplingParams(do_sample=True, top_p=0.05),
    ],
)
def test_process_logits_matches_transformers(params):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = torch.randn(1, 50, generator=gen, dtype=torch.float64) * 3
        history = torch.randint(0, 50, (7,), generator=gen).tolist()
        seen = torch.zeros(1, 50, dtype=torch.bool)
        seen[0, history] = True
        ours = process_logits(logits, params, seen)
        theirs = hf_process(logits, history, params)
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
        finite = ~torch.isinf(ours)
        assert torch.allclose(ours[finite], theirs[finite])


def test_presence_rows_follow_tree_paths():
    base = torch.zeros(10, dtype=torch.bool)
    base[5] = True
    # tree: node0=7 (root child), node1=9 (child of 0), node2=3 (root child)
    ancestors = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    rows = presence_rows(base, torch.tensor([7, 9, 3]), ancestors)
    as_sets = [set(torch.nonzero(r).flatten().tolist()) for r in rows]
    assert as_sets == [{5}, {5, 7}, {5, 7, 9}, {5, 3}]


def test_invalid_params_raise():
    for bad in (dict(temperature=-1), dict(top_k=-1), dict(top_p=0), dict(top_p=1.5), dict(repetition_penalty=0)):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, 1.9]])
    params = SamplingParams(do_sample=True, temperature=0)
    assert params.greedy
    assert choose_tokens(process_logits(logits, params), params, None).tolist() == [1]


def test_inverse_cdf_draws_pick_by_cumulative_mass():
    """probs (0.2, 0, 0.5, 0.3): cumulative (0.2, 0.2, 0.7, 1.0); a draw u picks the first
    token whose cumulative mass exceeds u, never the zero-probability token."""
    params = SamplingParams(do_sample=True)
    scores = torch.tensor([0.2, 0.0, 0.5, 0.3], dtype=torch.float64).log().expand(6, 4)
    picks = choose_tokens(scores, params, draws=[0.0, 0.1, 0.2 + 1e-9, 0.69, 0.71, 0.999]).tolist()
    assert picks == [0, 0, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="one draw per row"):
        choose_tokens(scores, params, draws=[0.5])
    greedy = SamplingParams()
    assert choose_tokens(scores, greedy, draws=[0.0] * 6).tolist() == [2] * 6


def test_position_draws_depend_on_seed_and_position_only():
    draws = PositionDraws(7)
    first = draws([5, 3, 9])
    assert PositionDraws(7)([9, 3, 5]) == first[::-1]  # order and history do not matter
    assert draws([3]) == [first[1]]
    assert len(set(first)) == 3 and all(0.0 <= u < 1.0 for u in first)
    assert PositionDraws(8)([5, 3, 9]) != first
    assert PositionDraws(-1)([0]) == PositionDraws(2**64 - 1)([0])
    # uniform over positions: 4000 positions in 10 equal bins
    counts = np.histogram(PositionDraws(0)(range(4000)), bins=10, range=(0, 1))[0]
    assert chisquare(counts).pvalue > 1e-3


def test_top_p_on_a_large_vocabulary_matches_transformers_and_the_full_sort():
    """V = 49,152 (SmolLM2's): peaked rows take the top-candidates path, flat rows the full
    sort; both give transformers' TopPLogitsWarper mask, and a row's mask does not depend
    on the rows batched with it."""
    from hasten import sampling

    gen = torch.Generator().manual_seed(0)
    vocab = 49152
    rows = torch.cat(
        [
            torch.randn(4, vocab, generator=gen) * 6,  # peaked: nucleus among the top 1024
            torch.randn(2, vocab, generator=gen) * 0.05,
        ]
    )  # flat: needs the full sort
    for top_p in (0.5, 0.9, 0.95):
        drop = sampling.top_p_drop(rows, top_p)
        theirs = torch.isinf(TopPLogitsWarper(top_p)(None, rows.clone()))
        assert torch.equal(drop, theirs), top_p
        assert torch.equal(drop, sampling._top_p_drop_sorted(rows, top_p))
        singles = torch.cat([sampling.top_p_drop(rows[i : i + 1], top_p) for i in range(len(rows))])
        assert torch.equal(drop, singles)
        kept = (~drop).sum(-1)
        assert (kept[:4] < sampling.NUCLEUS_CANDIDATES).all() and (kept[4:] > sampling.NUCLEUS_CANDIDATES).all()
