"""Contracts shared by the draft-free tree methods: greedy output never depends on tree
width or depth, and a drafter reused across requests keeps nothing from earlier ones
unless it was explicitly given shared state."""

import pytest
import torch
from conftest import exactness_prompts

import hasten
from hasten.drafters import build_drafter

from .recording import drafts_of, record

PROMPTS = exactness_prompts()[:12]
MAX_NEW = 24

SHAPES = {
    "trie": [
        {"max_nodes": 1, "max_depth": 1},
        {"max_nodes": 3, "max_depth": 2, "max_match": 1},
        {"max_nodes": 24, "max_depth": 7, "min_prob": 0.0, "shorter_match_weight": 1.0},
    ],
    "suffix": [
        {"max_nodes": 1, "max_depth": 1},
        {"max_nodes": 4, "index_ngram": 1, "max_occurrences": 1},
        {"max_nodes": 40, "nodes_per_match": 20.0, "max_depth": 12, "min_prob": 0.0},
    ],
    "jacobi": [
        {"window": 1, "ngram": 2, "candidates": 0},
        {"window": 2, "ngram": 3, "candidates": 1},
        {"window": 7, "ngram": 5, "candidates": 6, "pool_size": 10},
    ],
    "recycling": [
        {"widths": (1,), "rank_prior": (0.5,), "max_nodes": 1},
        {"widths": (2, 1, 1), "max_nodes": 4},
        {
            "widths": (8, 4, 2, 2, 1, 1, 1, 1),
            "rank_prior": (0.5, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01),
            "max_nodes": 48,
        },
    ],
}


@pytest.fixture(scope="module")
def model_and_refs(tiny_factory):
    model = tiny_factory("llama")
    with torch.inference_mode():
        refs = [
            model.generate(
                torch.tensor([p]),
                do_sample=False,
                max_new_tokens=MAX_NEW,
                attention_mask=torch.ones(1, len(p), dtype=torch.long),
            )[0].tolist()
            for p in PROMPTS
        ]
    return model, refs


@pytest.mark.parametrize(
    "method,options",
    [(m, o) for m, shapes in SHAPES.items() for o in shapes],
    ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}{v}" for k, v in x.items()),
)
def test_tree_shape_never_changes_greedy_output(model_and_refs, method, options):
    model, refs = model_and_refs
    drafted = 0
    widest = 0
    for prompt, ref in zip(PROMPTS, refs):
        wrapped = record(build_drafter(method, **options))
        result = hasten.generate(model, prompt, method=wrapped, max_new_tokens=MAX_NEW)
        assert result.sequences[0].tolist() == ref, f"{method} {options} on {prompt[:6]}"
        drafted += sum(result.stats.drafted)
        widest = max([widest] + [len(d[0]) for _, d in wrapped.log if d is not None])
    assert drafted > 0
    budget = options.get("max_nodes")
    if budget is not None:
        assert widest <= budget  # the node budget is respected


@pytest.mark.parametrize("method", list(SHAPES))
def test_reused_drafter_keeps_nothing_from_earlier_requests(tiny_factory, method):
    model = tiny_factory("qwen2")
    first, second = [31, 32, 33, 31, 32, 33, 31], [33, 31, 32, 40]
    drafter = build_drafter(method)
    hasten.generate(model, first, method=drafter, max_new_tokens=16)
    assert drafts_of(model, second, drafter) == drafts_of(model, second, build_drafter(method))
