"""Self-speculative drafters (layer_skip / SWIFT, early_exit, hierarchical / TriForce):
exactness on 6-layer float64 tiny models, cache completeness, the skip-set cache, a
4,000-token prompt, the user's model left untouched, and the pure helpers against
slow references."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import exactness_prompts
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

import hasten
from hasten import kv
from hasten.drafters import _skip_search
from hasten.drafters._layers import (
    additive_mask,
    describe_skip,
    expected_speedup,
    first_draft_mask,
    forward_skipping,
    layer_stack,
    layer_units,
    relative_draft_cost,
    score_first_drafts,
)
from hasten.drafters._skip_search import SkipSetCache, SkipSetSearch, gp_posterior, hamming_kernel
from hasten.drafters.early_exit import exit_candidates
from hasten.drafters.hierarchical import NgramIndex, chunk_relevance, select_positions
from hasten.drafters.layer_skip import LayerSkipConfig, LayerSkipDrafter, skip_groups

MAX_NEW = 20
PROMPTS = exactness_prompts()[:10] + exactness_prompts()[20:24]
# options that make each method draft on tiny random models (which no skip set speeds up)
CASES = {
    "layer_skip": {"min_expected_speedup": 0.0, "window": 12, "max_optimization_steps": 3},
    "early_exit": {"min_expected_speedup": 0.0, "window": 12},
    "hierarchical": {
        "sink_tokens": 2,
        "recent_tokens": 6,
        "chunk_size": 4,
        "retrieval_tokens": 8,
        "min_context": 12,
        "min_ngram": 1,
    },
}


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def deep_model(request, tiny_factory):
    """A 6-layer float64 tiny model and model.generate's greedy outputs on PROMPTS."""
    model = tiny_factory(request.param, seed=5, layers=6)
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


@pytest.mark.parametrize("method", list(CASES))
def test_six_layer_models_are_token_identical(deep_model, method):
    model, refs = deep_model
    drafted = accepted = 0
    for prompt, ref in zip(PROMPTS, refs):
        result = hasten.generate(model, prompt, method=method, max_new_tokens=MAX_NEW, method_options=CASES[method])
        assert result.sequences[0].tolist() == ref, f"{method} on {prompt[:6]}"
        drafted += sum(result.stats.drafted)
        accepted += sum(result.stats.accepted)
    assert drafted > 0 and accepted > 0, (method, drafted, accepted)


@pytest.mark.parametrize("method", list(CASES))
def test_sampling_drafts_and_runs(tiny_factory, method):
    """Sampled runs draft (so the distribution test exercises the draft path) and the seed
    reproduces them when the drafts are the same: no skip-set cache carried over (a
    cache learning between the runs may change the drafts, hence which draws are made)."""
    model = tiny_factory("llama", seed=5, layers=6)
    prompt = [7, 19, 23, 29, 11, 7, 19, 23, 29, 12, 7, 19, 23, 29, 13, 7, 19]
    options = dict(CASES[method], **({"skip_cache": None} if method != "hierarchical" else {}))
    runs = [
        hasten.generate(
            model,
            prompt,
            method=method,
            max_new_tokens=16,
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.2,
            seed=3,
            method_options=options,
        )
        for _ in range(2)
    ]
    assert runs[0].sequences.tolist() == runs[1].sequences.tolist()
    assert sum(runs[0].stats.drafted) > 0


def _zero_attention_output(model, layer: int):
    """A copy of ``model`` whose layer ``layer`` attention adds nothing to the residual
    (its keys and values are still cached), so drafts skipping it are always right."""
    import copy

    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.model.layers[layer].self_attn.o_proj.weight.zero_()
    return clone


class _CacheChecker(LayerSkipDrafter):
    """layer_skip that, before each draft, compares the engine's cache with a fresh full
    forward over the committed tokens (all but the root)."""

    def begin(self, request):
        super().begin(request)
        self.checks = 0

    def propose(self, tokens, max_depth):
        cache = self.request.target_cache
        reference = kv.new_cache(self.request.target)
        self.request.target(input_ids=torch.tensor([tokens[:-1]]), cache=reference, use_cache=True)
        assert len(cache.layers) == len(reference.layers)
        for mine, ref in zip(cache.layers, reference.layers):
            assert mine.keys.shape == ref.keys.shape
            torch.testing.assert_close(mine.keys, ref.keys, rtol=0, atol=1e-10)
            torch.testing.assert_close(mine.values, ref.values, rtol=0, atol=1e-10)
        self.checks += 1
        return super().propose(tokens, max_depth)


@pytest.mark.parametrize("skip", [(4,), (4, 7, 9)])
def test_cache_is_complete_after_steps_with_acceptances(tiny_factory, skip):
    """Skipping layer 2's attention (zeroed output: drafts always accepted) and more: the
    skipped layers' cache entries exist and equal a plain forward's after every step."""
    model = _zero_attention_output(tiny_factory("llama", seed=5, layers=6), 2)
    drafter = _CacheChecker(LayerSkipConfig(skip_set=skip, confidence_threshold=0.0, max_draft=4))
    prompt = [5, 9, 14, 3, 5, 9]
    reference = hasten.generate(model, prompt, max_new_tokens=24).sequences
    result = hasten.generate(model, prompt, method=drafter, max_new_tokens=24, draft_budget=None)
    assert torch.equal(result.sequences, reference)
    assert drafter.checks >= result.stats.steps - 1 > 0  # (the last step, one token left, drafts nothing)
    assert sum(result.stats.accepted) >= (result.stats.steps if skip == (4,) else 1)


def test_skip_set_cache_never_changes_outputs(tiny_factory, tmp_path):
    """A, B, A with one cache: the second A starts from cached skip sets; outputs equal
    plain decoding's every time; the cache file round-trips."""
    model = tiny_factory("qwen2", seed=5, layers=6)
    a, b = [11, 7, 19, 23, 29, 12, 13, 7, 19, 23, 29, 14], list(range(10, 30))
    refs = {tuple(p): hasten.generate(model, p, max_new_tokens=MAX_NEW).sequences.tolist() for p in (a, b)}
    path = tmp_path / "skips.json"
    options = dict(CASES["layer_skip"], skip_cache=SkipSetCache(path), search_budget=100)
    runs = [
        hasten.generate(model, p, method="layer_skip", max_new_tokens=MAX_NEW, method_options=options)
        for p in (a, b, a)
    ]
    for p, run in zip((a, b, a), runs):
        assert run.sequences.tolist() == refs[tuple(p)]
    assert not runs[0].stats.drafter["started_from_cache"]
    assert runs[2].stats.drafter["started_from_cache"]
    assert runs[0].stats.drafter["evaluations"] > 0
    reloaded = SkipSetCache(path)
    assert len(reloaded) == len(options["skip_cache"]) > 0
    spent = dict(options, skip_cache=reloaded, search_budget=1)  # budget spent: no search at all
    again = hasten.generate(model, a, method="layer_skip", max_new_tokens=MAX_NEW, method_options=spent)
    assert again.sequences.tolist() == refs[tuple(a)]
    assert again.stats.drafter["evaluations"] == 0 and again.stats.drafter["drafting_steps"] > 0


def _measurements(path) -> int:
    return sum(SkipSetCache(path).measurements(key) for key in SkipSetCache(path).table)


def test_default_skip_cache_makes_later_requests_skip_the_search(tiny_factory):
    """With no skip_cache given, layer_skip keeps its measurements in the per-user file:
    a second request starts from them, and once the search budget is spent a request
    scores no skip set at all (the search cost is paid once per model). Outputs equal
    plain decoding's throughout."""
    model = tiny_factory("llama", seed=5, layers=6)
    a, b = [11, 7, 19, 23, 29, 12, 13, 7, 19, 23, 29, 14], list(range(10, 30))
    refs = {tuple(p): hasten.generate(model, p, max_new_tokens=MAX_NEW).sequences.tolist() for p in (a, b)}
    path = _skip_search.default_skip_cache_path()
    assert not path.exists()
    first, second = (
        hasten.generate(
            model,
            p,
            method="layer_skip",
            max_new_tokens=MAX_NEW,
            method_options=dict(CASES["layer_skip"], search_budget=100),
        )
        for p in (a, b)
    )
    assert [first.sequences.tolist(), second.sequences.tolist()] == [refs[tuple(a)], refs[tuple(b)]]
    assert not first.stats.drafter["started_from_cache"] and second.stats.drafter["started_from_cache"]
    evaluations = first.stats.drafter["evaluations"] + second.stats.drafter["evaluations"]
    assert evaluations > 0 and _measurements(path) == evaluations
    spent = hasten.generate(
        model,
        a,
        method="layer_skip",
        max_new_tokens=MAX_NEW,
        method_options=dict(CASES["layer_skip"], search_budget=evaluations),
    )
    assert spent.sequences.tolist() == refs[tuple(a)]
    assert spent.stats.drafter["evaluations"] == 0 and spent.stats.drafter["started_from_cache"]
    assert _measurements(path) == evaluations


def test_default_skip_cache_lets_early_exit_measure_once(tiny_factory):
    model = tiny_factory("qwen2", seed=5, layers=6)
    prompt = list(range(10, 40))
    ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences
    runs = [
        hasten.generate(model, prompt, method="early_exit", max_new_tokens=MAX_NEW, method_options=CASES["early_exit"])
        for _ in range(2)
    ]
    assert all(torch.equal(run.sequences, ref) for run in runs)
    assert runs[0].stats.drafter["measurements"] > 0 and not runs[0].stats.drafter["started_from_cache"]
    assert runs[1].stats.drafter["measurements"] == 0 and runs[1].stats.drafter["started_from_cache"]
    assert runs[1].stats.drafter["exit_layer"] == runs[0].stats.drafter["exit_layer"]


def test_unreadable_skip_cache_files(tiny_factory, tmp_path):
    """The default file is only a cache: garbage there is replaced, with a warning, and
    the request goes on. A file the user named is never overwritten: clear error."""
    model = tiny_factory("llama", seed=5, layers=6)
    prompt = list(range(10, 30))
    ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences
    default = _skip_search.default_skip_cache_path()
    default.parent.mkdir(parents=True)
    default.write_text("{not json")
    with pytest.warns(UserWarning, match="not a skip-set cache"):
        result = hasten.generate(
            model, prompt, method="layer_skip", max_new_tokens=MAX_NEW, method_options=CASES["layer_skip"]
        )
    assert torch.equal(result.sequences, ref)
    assert _measurements(default) == result.stats.drafter["evaluations"] > 0
    named = tmp_path / "mine.json"
    named.write_text('{"format": 2}')
    for method in ("layer_skip", "early_exit"):
        with pytest.raises(ValueError, match="not a skip-set cache written by hasten"):
            hasten.generate(model, prompt, method=method, max_new_tokens=4, method_options={"skip_cache": named})
    assert named.read_text() == '{"format": 2}'
    with pytest.raises(ValueError, match="skip_cache must be"):
        LayerSkipConfig(skip_cache=3)


def test_long_prompt_through_hierarchical(tiny_factory):
    """A 4,200-token prompt: level 1 reads 4 sink + 768 retrieved + 256 recent tokens and
    the output equals model.generate's."""
    model = tiny_factory("llama", seed=5, layers=6)
    model.config.max_position_embeddings = 8192
    rng = random.Random(7)
    prompt = [rng.randrange(3, 96) for _ in range(4200)]
    for start in range(100, 4000, 400):  # repeated spans for level 2 to find
        prompt[start + 200 : start + 230] = prompt[start : start + 30]
    with torch.inference_mode():
        ref = model.generate(
            torch.tensor([prompt]),
            do_sample=False,
            max_new_tokens=24,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )[0].tolist()
    result = hasten.generate(model, prompt, method="hierarchical", max_new_tokens=24)
    assert result.sequences[0].tolist() == ref
    stats = result.stats.drafter
    assert stats["level1_forwards"] > 0 and stats["direct_steps"] == 0 and stats["refreshes"] >= 2
    assert stats["partial_cache_tokens"] <= 4 + 768 + 256 + 8 * 7  # + tokens committed since a refresh
    assert sum(result.stats.accepted) > 0


def test_level1_with_the_whole_cache_is_the_target(tiny_factory):
    """With a recent window covering the context, level 1 is the full model: every level-1
    token is accepted (greedy) — positions, masks and gathering are right."""
    model = tiny_factory("llama", seed=5, layers=6)
    for prompt in exactness_prompts()[4:8]:
        result = hasten.generate(
            model,
            prompt,
            method="hierarchical",
            max_new_tokens=MAX_NEW,
            draft_budget=None,
            method_options=dict(recent_tokens=1000, min_context=0, level2=None, confidence_threshold=0.0),
        )
        assert sum(result.stats.accepted) == sum(result.stats.drafted) > 0


def test_hierarchical_with_a_draft_model_level2(tiny_factory):
    model = tiny_factory("llama", seed=5, layers=6)
    for prompt in exactness_prompts()[5:7]:
        ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences
        options = dict(CASES["hierarchical"], level2="self:3")
        result = hasten.generate(model, prompt, method="hierarchical", max_new_tokens=MAX_NEW, method_options=options)
        assert torch.equal(result.sequences, ref)
        assert result.stats.drafter["level2_proposed"] > 0


@pytest.mark.parametrize("method", list(CASES))
def test_user_model_is_left_untouched(tiny_factory, method):
    model = tiny_factory("llama", seed=5, layers=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    class_forward = LlamaDecoderLayer.forward
    hasten.generate(model, list(range(10, 40)), method=method, max_new_tokens=12, method_options=CASES[method])
    assert LlamaDecoderLayer.forward is class_forward
    for name, module in model.named_modules():
        assert "forward" not in vars(module), name
        assert not module._forward_pre_hooks and not module._forward_hooks, name
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_unsupported_model_and_bad_options(tiny_factory):
    gpt2 = tiny_factory("gpt2")
    for method in ("layer_skip", "early_exit"):
        with pytest.raises(ValueError, match="Llama-style"):
            hasten.generate(gpt2, [5, 6, 7], method=method, max_new_tokens=4)
    with pytest.raises(ValueError):
        LayerSkipConfig(granularity="heads")
    with pytest.raises(ValueError, match="skip_set"):
        hasten.generate(
            tiny_factory("llama", layers=6),
            [5, 6],
            method="layer_skip",
            max_new_tokens=4,
            method_options={"skip_set": (12,)},
        )
    with pytest.raises(ValueError):
        hasten.generate(
            tiny_factory("llama", layers=6),
            [5, 6],
            method="early_exit",
            max_new_tokens=4,
            method_options={"exit_layer": 6},
        )


def test_hierarchical_works_on_gpt2_by_recency(tiny_factory):
    model = tiny_factory("gpt2")
    prompt = exactness_prompts()[7]
    ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences
    result = hasten.generate(
        model, prompt, method="hierarchical", max_new_tokens=MAX_NEW, method_options=CASES["hierarchical"]
    )
    assert torch.equal(result.sequences, ref)
    assert result.stats.drafter["level1_forwards"] > 0


# ----- the pure helpers, against slow references -----------------------------------------


def test_layer_by_layer_forward_equals_the_model(tiny_factory):
    model = tiny_factory("qwen2", seed=5, layers=6)
    stack = layer_stack(model)
    tokens = [5, 9, 14, 3, 5, 9, 22]
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([tokens])).logits[0]
        cache = kv.new_cache(model)
        mask = additive_mask(torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril(), torch.float64)
        (logits,) = forward_skipping(stack, cache, tokens, range(len(tokens)), mask=mask)
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)
        # skipping both sublayers of a layer = skipping the layer
        both = forward_skipping(stack, kv.new_cache(model), tokens, range(len(tokens)), layer_units([2]), mask)[0]
        whole = forward_skipping(stack, kv.new_cache(model), tokens, range(len(tokens)), frozenset({4, 5}), mask)[0]
        torch.testing.assert_close(both, whole, rtol=0, atol=0)
        assert not torch.allclose(both, expected)


@pytest.mark.parametrize("skip,exits", [(frozenset({3, 6, 9}), ()), (frozenset(), (2, 4, 5))])
def test_first_draft_scores_equal_drafting_one_position_at_a_time(tiny_factory, skip, exits):
    model = tiny_factory("llama", seed=5, layers=6)
    stack = layer_stack(model)
    tokens = exactness_prompts()[5][:30]
    with torch.inference_mode():
        cache = kv.new_cache(model)
        model(input_ids=torch.tensor([tokens[:-1]]), cache=cache, use_cache=True)
        scores, count = score_first_drafts(stack, cache, tokens, 12, skip, exits)
        assert kv.cache_length(cache) == len(tokens) - 1 and count == 12
        for e, score in zip(exits or [None], scores):
            hits = 0
            for p in range(len(tokens) - 13, len(tokens) - 1):  # slow: a real first draft at each position
                prefix = kv.new_cache(model)
                model(input_ids=torch.tensor([tokens[:p]]), cache=prefix, use_cache=True)
                logits = forward_skipping(stack, prefix, [tokens[p]], [p], skip, exits=[e] if e else ())[0]
                hits += int(logits[-1].argmax()) == tokens[p + 1]
            assert score == pytest.approx(hits / 12)


def test_first_draft_mask_example():
    expected = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(first_draft_mask(4, 2, 2), expected)


def test_small_pure_helpers():
    assert describe_skip(frozenset({6, 7, 9})) == "L3 M4" and describe_skip(frozenset()) == "-"
    assert layer_units([1, 3]) == frozenset({2, 3, 6, 7})
    assert skip_groups(3, True) == [frozenset({2}), frozenset({3}), frozenset({4}), frozenset({5})]
    assert skip_groups(4, False) == [frozenset({2, 3}), frozenset({4, 5})]
    assert exit_candidates(30, 6) == [7, 11, 16, 20, 25, 29] and exit_candidates(2, 6) == [1]
    assert expected_speedup(0.5, 0.5, lambda n: 1.0, 1) == pytest.approx(1.0)
    assert expected_speedup(1.0, 0.0, lambda n: 1.0, 3) == pytest.approx(4.0)
    assert select_positions(20, 2, 4, 3, [1]) == [0, 1, 5, 6, 7, 16, 17, 18, 19]


def test_relative_draft_cost_counts_parameters(tiny_factory):
    model = tiny_factory("llama", seed=5, layers=6)
    stack = layer_stack(model)
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    head = sum(p.numel() for p in model.lm_head.parameters()) + sum(p.numel() for p in model.model.norm.parameters())
    assert relative_draft_cost(stack, layer_units([1, 2])) == pytest.approx((4 * layer + head) / (6 * layer + head))
    assert relative_draft_cost(stack, frozenset(), 3) == pytest.approx((3 * layer + head) / (6 * layer + head))


def test_gaussian_process_posterior():
    assert np.allclose(hamming_kernel(np.array([[1, 0]]), np.array([[1, 0], [0, 1]]), 1.0, 1.0), [[1, np.exp(-2)]])
    x = np.array([[1, 0, 0, 0], [0, 0, 1, 1]], dtype=float)
    y = np.array([0.9, 0.1])
    mean, std = gp_posterior(x, y, np.vstack([x, [[1, 0, 0, 1]]]), lengthscale=1.0, noise=1e-6)
    assert mean[:2] == pytest.approx(y, abs=1e-4) and std[:2].max() < 1e-2
    assert mean[0] > mean[2] > mean[1] and std[2] > 0.05  # in between, and uncertain


def test_search_finds_a_planted_optimum():
    """8 groups; acceptance falls by 0.3 per skipped group except group 3, which is free
    to skip, and the objective rewards each skipped group by 10%: {group 3} alone is best."""
    groups = [frozenset({i}) for i in range(8)]

    def acceptance(skip):
        return max(0.0, 0.95 - 0.3 * len(skip - {3}))

    def objective(skip, acc):
        return acc * (1 + 0.1 * len(skip))

    search = SkipSetSearch(groups, max_skip=4, objective=objective, seed=1)
    for _ in range(14):
        for skip in search.suggest(2):
            search.observe(skip, acceptance(skip))
    best, acc, _ = search.best()
    assert best == frozenset({3}) and acc == pytest.approx(0.95)
    suggested = [s for s in search.suggest(50)]
    assert len(set(suggested)) == len(suggested)  # never proposes a set twice
    assert not set(suggested) & {s for s, _, _ in search.observed()}


def test_ngram_index_follows_rollbacks():
    index = NgramIndex(1, 3)
    tokens = [1, 2, 3, 1, 2]
    index.sync(tokens)
    assert index.lookup(tokens, 3) == [3, 1, 2]
    index.sync([1, 2, 3, 1, 2, 9, 1, 2])  # speculative tail
    assert index.lookup([1, 2, 3, 1, 2, 9, 1, 2], 1) == [9]
    tokens = [1, 2, 3, 1, 2, 4, 1, 2]  # rolled back and diverged: the "2 -> 9" entry is gone
    index.sync(tokens)
    assert index.lookup(tokens, 1) == [4]
    fresh = NgramIndex(1, 3)
    fresh.sync(tokens)
    assert fresh.table == index.table


def test_chunk_relevance_prefers_the_matching_chunk():
    queries = torch.tensor([[[10.0, 0.0]]])
    keys = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    scores = chunk_relevance(queries, keys)
    assert scores.shape == (1, 2) and scores[0, 0] > 0.99
