"""SJD is lossless: the distribution of the first tokens equals the exact model
distribution, computed here independently by enumerating every prefix with full
(cache-free) forwards; a broken acceptance rule is caught by the same test."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chisquare

from hasten.arimage.core import DecodeSettings
from hasten.arimage.generate import image_generator
from hasten.arimage.jacobi import jacobi_tokens
from hasten.arimage.methods.reference import reference_tokens
from hasten.verify import speculative_sample_accept

from .conftest import tiny_discrete

SEEDS = 2000
FIRST = 3
CFG, TOP_K, LABEL = 2.0, 3, 1


def exact_prefix_probs(model, label: int) -> dict[tuple[int, ...], float]:
    """P(first FIRST tokens) by enumeration; guidance and top-k written out by hand."""
    module, vocab = model.module, model.vocab_size
    ids = torch.tensor([label, model.null_class])
    out = {}
    for prefix in itertools.product(range(vocab), repeat=FIRST):
        inputs = torch.tensor([[0, *prefix[:-1]]] * 2)
        logits = module(inputs, ids).double()  # (2, FIRST, V), no cache
        guided = logits[1] + CFG * (logits[0] - logits[1])
        prob = 1.0
        for t in range(FIRST):
            row = guided[t]
            kth = row.sort(descending=True).values[TOP_K - 1]
            row = torch.where(row >= kth, row, torch.tensor(float("-inf"), dtype=row.dtype))
            prob *= float(torch.softmax(row, dim=0)[prefix[t]])
        out[prefix] = prob
    return out


def broken_accept(draft_tokens, draft_probs, target_probs, generator):
    """The classic bug: recover from the target instead of norm(max(0, target - draft))."""
    k = draft_tokens.numel()
    rows = torch.arange(k)
    uniform = torch.rand(k, generator=generator, dtype=torch.float64)
    rejected = uniform * draft_probs[rows, draft_tokens] > target_probs[rows, draft_tokens]
    first = int(rejected.nonzero()[0]) if bool(rejected.any()) else k
    return list(range(first)), int(torch.multinomial(target_probs[first], 1, generator=generator))


def chi2_pvalue(samples: list[tuple[int, ...]], exact: dict[tuple[int, ...], float]) -> float:
    counts = {key: 0 for key in exact}
    for s in samples:
        counts[s] += 1
    big = [k for k in exact if exact[k] * len(samples) >= 5]
    small = [k for k in exact if k not in big]
    observed = [counts[k] for k in big] + [sum(counts[k] for k in small)]
    expected = [exact[k] * len(samples) for k in big] + [sum(exact[k] for k in small) * len(samples)]
    return float(chisquare(observed, expected).pvalue)


def run(sampler) -> list[tuple[int, ...]]:
    return [tuple(sampler(image_generator(0, i))[0][:FIRST].tolist()) for i in range(SEEDS)]


@pytest.fixture(scope="module")
def setup():
    model = tiny_discrete(seed=1, grid=(2, 2))  # 4 tokens: the first 3 plus one
    return model, DecodeSettings(cfg_scale=CFG, top_k=TOP_K), exact_prefix_probs(model, LABEL)


def test_exact_distribution_is_peaked_enough_to_matter(setup):
    _, _, exact = setup
    assert abs(sum(exact.values()) - 1) < 1e-9
    assert max(exact.values()) > 3 / len(exact)  # far from uniform: a biased sampler shows


def test_reference_sampler_matches_the_exact_distribution(setup):
    model, settings, exact = setup
    assert chi2_pvalue(run(lambda g: reference_tokens(model, LABEL, settings, g)), exact) > 1e-3


@pytest.mark.parametrize(
    ("window", "init", "roles"),
    [
        (4, "random", ("cond", "uncond")),
        (4, "spatial", ("cond", "uncond")),
        # many Jacobi iterations: cache crops, redraws from the previous forward's rows,
        # spatial copies of committed tokens one row up (one-hot drafts)
        (2, "spatial", ("cond", "uncond")),
        # the bench's configuration: window 16 (capped at the sequence), spatial init, CFG
        # with the rows in the other order, top-k on
        (16, "spatial", ("uncond", "cond")),
    ],
)
def test_sjd_matches_the_exact_distribution(setup, window, init, roles):
    model, settings, exact = setup
    settings = DecodeSettings(cfg_scale=settings.cfg_scale, top_k=settings.top_k, roles=roles)
    samples = run(lambda g: jacobi_tokens(model, LABEL, settings, g, window, init, speculative_sample_accept))
    assert chi2_pvalue(samples, exact) > 1e-3


def test_broken_acceptance_rule_is_caught(setup):
    model, settings, exact = setup
    samples = run(lambda g: jacobi_tokens(model, LABEL, settings, g, 4, "random", broken_accept))
    assert chi2_pvalue(samples, exact) < 1e-6
