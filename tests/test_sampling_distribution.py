"""Speculative sampling is lossless: the first three new tokens follow plain sampling's
distribution exactly.

The reference distribution is computed independently of hasten: full forwards without a
cache over every 2-token continuation, processed by transformers' own logits processors.
hasten's empirical distribution over 2000 seeds is compared with a chi-square
goodness-of-fit test. A deliberately broken acceptance rule is run through the same test
to show it has the power to fail.
"""

from __future__ import annotations

import pytest
import torch
from drafter_zoo import ReferenceTreeDrafter
from scipy.stats import chisquare
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

import hasten

V = 12
SEEDS = 2000
PROMPT = [3, 4, 5, 3, 4]
PARAMS = {
    "plain-T1": dict(do_sample=True),
    "T0.5-topp0.9-rep1.3": dict(do_sample=True, temperature=0.5, top_p=0.9, repetition_penalty=1.3),
}


@pytest.fixture(scope="module")
def models(tiny_factory):
    target = tiny_factory("llama", seed=3, layers=2, vocab=V, init=0.6)
    other = tiny_factory("llama", seed=11, layers=1, vocab=V, init=0.6)
    return target, other


def reference_distribution(model, params) -> dict[tuple[int, ...], float]:
    procs = LogitsProcessorList()
    if params.get("repetition_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(params["repetition_penalty"]))
    if params.get("temperature", 1.0) != 1.0:
        procs.append(TemperatureLogitsWarper(params["temperature"]))
    if params.get("top_p", 1.0) < 1.0:
        procs.append(TopPLogitsWarper(params["top_p"]))

    def next_probs(seq):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq])).logits[:, -1]
        return procs(torch.tensor([seq]), logits).softmax(-1)[0]

    dist = {}
    p1 = next_probs(PROMPT)
    for a in range(V):
        if p1[a] == 0:
            continue
        p2 = next_probs(PROMPT + [a])
        for b in range(V):
            if p2[b] == 0:
                continue
            p3 = next_probs(PROMPT + [a, b])
            for c in range(V):
                if p3[c] > 0:
                    dist[(a, b, c)] = float(p1[a] * p2[b] * p3[c])
    return dist


def goodness_of_fit(samples: list[tuple[int, ...]], dist: dict) -> float:
    counts: dict = {}
    for s in samples:
        counts[s] = counts.get(s, 0) + 1
    assert set(counts) <= set(dist), "sampled a continuation the target gives probability 0"
    n = len(samples)
    big = [k for k in dist if dist[k] * n >= 5]
    observed = [counts.get(k, 0) for k in big]
    expected = [dist[k] * n for k in big]
    rest_obs = n - sum(observed)
    rest_exp = n - sum(expected)
    if rest_exp >= 5:
        observed.append(rest_obs)
        expected.append(rest_exp)
    scale = sum(observed) / sum(expected)
    return chisquare(observed, [e * scale for e in expected]).pvalue


def sample_first_three(model, method, options, params, seeds=SEEDS, draft_budget="auto"):
    out = []
    for seed in range(seeds):
        result = hasten.generate(
            model,
            PROMPT,
            method=method,
            max_new_tokens=3,
            seed=seed,
            eos_token_id=[],
            method_options=options,
            draft_budget=draft_budget,
            **params,
        )
        out.append(tuple(result.sequences[0, len(PROMPT) :].tolist()))
    return out


CASES = {
    "plain": lambda target, other: (None, {}),
    "draft-is-target": lambda target, other: ("draft_model", {"draft_model": target, "confidence_threshold": 0.0}),
    "different-draft": lambda target, other: ("draft_model", {"draft_model": other, "confidence_threshold": 0.0}),
    "different-draft-tree": lambda target, other: (
        "draft_model",
        {"draft_model": other, "branch": 3, "confidence_threshold": 0.0},
    ),
    "prompt-lookup": lambda target, other: ("prompt_lookup", {}),
    "tree-sample-and-match": lambda target, other: (
        ReferenceTreeDrafter([3, 4, 5, 3, 4, 5, 3, 4], V, width=3, depth=2),
        {},
    ),
    "layer-skip": lambda target, other: ("layer_skip", {"skip_set": (3,), "confidence_threshold": 0.0}),
    "early-exit": lambda target, other: ("early_exit", {"exit_layer": 1, "confidence_threshold": 0.0}),
    "hierarchical": lambda target, other: (
        "hierarchical",
        {
            "sink_tokens": 1,
            "recent_tokens": 2,
            "chunk_size": 1,
            "retrieval_tokens": 1,
            "min_context": 0,
            "min_ngram": 1,
            "confidence_threshold": 0.0,
        },
    ),
    # the draft-free tree methods start from the target's greedy continuation (a trie, a
    # datastore, a hot adjacency map) so that their drafts are often accepted and the test
    # exercises acceptance; the trie and the map keep learning across seeds (lossless too)
    "trie": lambda target, other: ("trie", {"min_prob": 0.0, "trie": _greedy_trie(target)}),
    "jacobi": lambda target, other: ("jacobi", {"window": 4, "ngram": 2, "candidates": 3, "seed_from_context": False}),
    "suffix": lambda target, other: ("suffix", {"min_prob": 0.0, "datastore": _greedy_datastore(target)}),
    "recycling": lambda target, other: ("recycling", {"adjacency": _greedy_adjacency(target)}),
    "composite": lambda target, other: ("composite", {"pool": _greedy_pool(target), "calibration_cache": None}),
}


def _greedy(target) -> list[int]:
    return hasten.generate(target, PROMPT, max_new_tokens=6, eos_token_id=[]).sequences[0].tolist()


def _greedy_trie(target):
    from hasten.drafters.trie import TokenTrie, TrieFeeder

    trie = TokenTrie()
    TrieFeeder(trie, 8).feed(_greedy(target))
    return trie


def _greedy_datastore(target):
    from hasten.datastore import Datastore

    return Datastore.from_sequences([_greedy(target)])


def _greedy_pool(target):
    from hasten.drafters._composite_state import CrossRequestPool

    pool = CrossRequestPool(1000)
    pool.add(_greedy(target))
    return pool


def _greedy_adjacency(target):
    from hasten.drafters.recycling import AdjacencyMap, RecyclingConfig, RecyclingDrafter

    adjacency = AdjacencyMap()
    hasten.generate(
        target,
        _greedy(target),
        method=RecyclingDrafter(RecyclingConfig(adjacency=adjacency)),
        max_new_tokens=8,
        eos_token_id=[],
    )
    return adjacency


RUNS = [
    ("plain", "T0.5-topp0.9-rep1.3"),
    ("draft-is-target", "plain-T1"),
    ("draft-is-target", "T0.5-topp0.9-rep1.3"),
    ("different-draft", "plain-T1"),
    ("different-draft", "T0.5-topp0.9-rep1.3"),
    ("different-draft-tree", "plain-T1"),
    ("prompt-lookup", "T0.5-topp0.9-rep1.3"),
    ("tree-sample-and-match", "T0.5-topp0.9-rep1.3"),
    ("layer-skip", "T0.5-topp0.9-rep1.3"),
    ("early-exit", "T0.5-topp0.9-rep1.3"),
    ("hierarchical", "T0.5-topp0.9-rep1.3"),
    ("trie", "T0.5-topp0.9-rep1.3"),
    ("jacobi", "T0.5-topp0.9-rep1.3"),
    ("suffix", "T0.5-topp0.9-rep1.3"),
    ("recycling", "T0.5-topp0.9-rep1.3"),
    ("composite", "T0.5-topp0.9-rep1.3"),
    ("composite", "plain-T1"),
]


@pytest.mark.parametrize("case,params_id", RUNS)
def test_first_three_tokens_follow_plain_sampling(models, case, params_id):
    target, other = models
    params = PARAMS[params_id]
    method, options = CASES[case](target, other)
    samples = sample_first_three(target, method, options, params)
    pvalue = goodness_of_fit(samples, reference_distribution(target, params))
    assert pvalue > 1e-3, f"{case} / {params_id}: chi-square p = {pvalue:.2e}"


def test_broken_acceptance_is_detected(models, monkeypatch):
    """Negative control: accepting every drafted token regardless of probabilities must fail."""
    import hasten.engine as engine

    def accept_everything(draft_tokens, draft_probs, target_probs, generator):
        k = draft_tokens.numel()
        return list(range(k)), int(torch.multinomial(target_probs[k], 1, generator=generator))

    monkeypatch.setattr(engine, "speculative_sample_accept", accept_everything)
    target, other = models
    params = PARAMS["plain-T1"]
    samples = sample_first_three(
        target, "draft_model", {"draft_model": other, "confidence_threshold": 0.0}, params, seeds=600, draft_budget=None
    )
    assert goodness_of_fit(samples, reference_distribution(target, params)) < 1e-6
