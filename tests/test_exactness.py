"""The exactness suite every drafter inherits by registering.

Greedy output of every registered method (and of the test-only tree/chain drafters) must
be token-identical to ``model.generate(do_sample=False)`` and to hasten's plain path, on
float64 tiny models where numerics cannot hide a logic bug.

A method whose config needs resources (a draft model, a corpus) adds its cases to
``METHOD_CASES``; every other registered method runs with its defaults.
"""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, exactness_prompts
from drafter_zoo import ReferenceChainDrafter, ReferenceTreeDrafter

import hasten

MAX_NEW = 24
PROMPTS = exactness_prompts()

# name -> list of (case id, function(target, tiny_factory) -> method options)
METHOD_CASES = {
    "draft_model": [
        ("other-model", lambda target, make: {"draft_model": make("llama", seed=7, layers=1)}),
        ("same-model", lambda target, make: {"draft_model": target, "confidence_threshold": 0.0}),
        ("self-1-layer", lambda target, make: {"draft_model": "self:1", "max_draft": 3}),
        ("tree-branch-3", lambda target, make: {"draft_model": make("llama", seed=7, layers=1), "branch": 3}),
    ],
    "suffix": [
        ("defaults", lambda target, make: {}),
        ("datastore", lambda target, make: {"datastore": _datastore_of_own_outputs(target)}),
    ],
    "trie": [
        ("defaults", lambda target, make: {}),
        ("shared-warm-learning", lambda target, make: {"trie": _trie_of_own_outputs(target), "learn": True}),
    ],
    # self-speculative: tiny random models never pay for drafting, so force it
    "layer_skip": [
        ("always-draft", lambda target, make: {"min_expected_speedup": 0.0, "window": 12, "max_optimization_steps": 3})
    ],
    "early_exit": [("always-draft", lambda target, make: {"min_expected_speedup": 0.0, "window": 12})],
    "hierarchical": [
        ("defaults", lambda target, make: {}),
        (
            "small-partial-cache",
            lambda target, make: {
                "sink_tokens": 2,
                "recent_tokens": 6,
                "chunk_size": 4,
                "retrieval_tokens": 8,
                "min_context": 12,
                "min_ngram": 1,
            },
        ),
    ],
}


def _own_outputs(target) -> list[list[int]]:
    """Plain greedy outputs for the first 8 prompts plus unrelated token runs: a corpus whose
    drafts are right for some prompts and wrong for the rest."""
    outs = [hasten.generate(target, p, max_new_tokens=MAX_NEW).sequences[0].tolist() for p in PROMPTS[:8]]
    return outs + [list(range(3, VOCAB, 3)), [7, 19, 23, 29, 31] * 3]


def _datastore_of_own_outputs(target):
    from hasten.datastore import Datastore

    return Datastore.from_sequences(_own_outputs(target))


def _trie_of_own_outputs(target):
    from hasten.drafters.trie import TokenTrie, TrieFeeder

    trie = TokenTrie()
    for sequence in _own_outputs(target):
        TrieFeeder(trie, 8).feed(sequence)
    return trie


def method_cases():
    for name in hasten.list_methods():
        for case_id, options in METHOD_CASES.get(name, [("defaults", lambda target, make: {})]):
            yield pytest.param(name, options, id=f"{name}-{case_id}")


def transformers_greedy(model, prompts) -> list[list[int]]:
    """``model.generate(do_sample=False)`` outputs (prompt included): the references."""
    refs = []
    with torch.inference_mode():
        for prompt in prompts:
            out = model.generate(
                torch.tensor([prompt]),
                do_sample=False,
                max_new_tokens=MAX_NEW,
                attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            )
            refs.append(out[0].tolist())
    return refs


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model_and_refs(request, tiny_factory):
    model = tiny_factory(request.param)
    return model, transformers_greedy(model, PROMPTS)


def _first_mismatch(a: list[int], b: list[int]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at position {i}: {x} vs {y}"
    return f"lengths {len(a)} vs {len(b)}"


def test_plain_path_equals_transformers(model_and_refs):
    model, refs = model_and_refs
    assert len(PROMPTS) >= 30
    for prompt, ref in zip(PROMPTS, refs):
        out = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences[0].tolist()
        assert out == ref, f"prompt {prompt[:8]}...: {_first_mismatch(out, ref)}"


@pytest.mark.parametrize("method,options", list(method_cases()))
def test_method_is_token_identical(model_and_refs, tiny_factory, method, options):
    model, refs = model_and_refs
    opts = options(model, tiny_factory)
    drafted = accepted = 0
    for prompt, ref in zip(PROMPTS, refs):
        result = hasten.generate(model, prompt, method=method, max_new_tokens=MAX_NEW, method_options=opts)
        out = result.sequences[0].tolist()
        assert out == ref, f"{method} on prompt {prompt[:8]}...: {_first_mismatch(out, ref)}"
        drafted += sum(result.stats.drafted)
        accepted += sum(result.stats.accepted)
    assert drafted > 0, f"{method} never drafted anything on {len(PROMPTS)} prompts"
    assert accepted > 0, f"{method} never had a draft token accepted"


def assert_trees_exact(model, prompts, refs, width: int, depth: int) -> None:
    """Reference trees (correct path hidden among random siblings) give the reference output."""
    total_accepted = 0
    for i, (prompt, ref) in enumerate(zip(prompts, refs)):
        drafter = ReferenceTreeDrafter(ref, VOCAB, seed=i, width=width, depth=depth)
        result = hasten.generate(model, prompt, method=drafter, max_new_tokens=MAX_NEW)
        out = result.sequences[0].tolist()
        assert out == ref, f"tree {width}x{depth}, prompt {i}: {_first_mismatch(out, ref)}"
        total_accepted += sum(result.stats.accepted)
    assert total_accepted > len(prompts)  # the trees did carry correct tokens


@pytest.mark.parametrize("width,depth", [(1, 6), (2, 3), (3, 4), (4, 2)])
def test_tree_verification_is_token_identical(model_and_refs, width, depth):
    """Trees of several widths and depths, correct path hidden among random siblings."""
    model, refs = model_and_refs
    assert_trees_exact(model, PROMPTS, refs, width, depth)


def test_partially_correct_chains_are_token_identical(model_and_refs):
    model, refs = model_and_refs
    accepted, drafted = 0, 0
    for i, (prompt, ref) in enumerate(zip(PROMPTS, refs)):
        drafter = ReferenceChainDrafter(ref, VOCAB, seed=i)
        result = hasten.generate(model, prompt, method=drafter, max_new_tokens=MAX_NEW)
        assert result.sequences[0].tolist() == ref
        accepted += sum(result.stats.accepted)
        drafted += sum(result.stats.drafted)
    assert 0 < accepted < drafted  # some rejections, some acceptances


def test_gpt2_plain_and_prompt_lookup(tiny_factory):
    model = tiny_factory("gpt2")
    for prompt in PROMPTS[:12]:
        ref = model.generate(
            torch.tensor([prompt]),
            do_sample=False,
            max_new_tokens=MAX_NEW,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )[0].tolist()
        for method in (None, "prompt_lookup"):
            assert hasten.generate(model, prompt, method=method, max_new_tokens=MAX_NEW).sequences[0].tolist() == ref


def test_gpt2_tree_verification(tiny_factory):
    model = tiny_factory("gpt2")
    for i, prompt in enumerate(PROMPTS[:8]):
        ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences[0].tolist()
        drafter = ReferenceTreeDrafter(ref, VOCAB, seed=i, width=3, depth=3)
        assert hasten.generate(model, prompt, method=drafter, max_new_tokens=MAX_NEW).sequences[0].tolist() == ref


@pytest.mark.parametrize(
    "method,options",
    [
        pytest.param(None, {}, id="plain"),
        pytest.param("prompt_lookup", {}, id="prompt_lookup"),
        pytest.param("draft_model", {"branch": 2}, id="draft_model-tree"),
    ],
)
def test_static_cache_is_token_identical(model_and_refs, tiny_factory, method, options):
    model, refs = model_and_refs
    if method == "draft_model":
        options = dict(options, draft_model=tiny_factory("llama", seed=7, layers=1))
    for i, (prompt, ref) in enumerate(zip(PROMPTS, refs)):
        out = (
            hasten.generate(
                model, prompt, method=method, max_new_tokens=MAX_NEW, method_options=options, kv_cache="static"
            )
            .sequences[0]
            .tolist()
        )
        assert out == ref, f"static cache, {method}, prompt {i}: {_first_mismatch(out, ref)}"
        tree = ReferenceTreeDrafter(ref, VOCAB, seed=i, width=3, depth=3)
        out = hasten.generate(model, prompt, method=tree, max_new_tokens=MAX_NEW, kv_cache="static")
        assert out.sequences[0].tolist() == ref


# --- sampling: draft-free methods are token-identical to plain sampling with the same seed

SAMPLING = {
    "T1": dict(do_sample=True),
    "T0.8-topk40-topp0.95-rep1.2": dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.2),
}


def _draft_free_method_cases():
    from hasten.drafters import get_method

    for case in method_cases():
        name = case.values[0]
        if not get_method(name).drafter_cls.proposes_distributions:
            yield case


@pytest.fixture(scope="module")
def sampled_refs(model_and_refs):
    """Plain sampled outputs, seed i for prompt i, per sampling setting."""
    model, _ = model_and_refs
    return {
        key: [
            hasten.generate(model, p, max_new_tokens=MAX_NEW, seed=i, **params).sequences[0].tolist()
            for i, p in enumerate(PROMPTS)
        ]
        for key, params in SAMPLING.items()
    }


@pytest.mark.parametrize("params_id", list(SAMPLING))
@pytest.mark.parametrize("method,options", list(_draft_free_method_cases()))
def test_sampled_draft_free_method_equals_plain_sampling(
    model_and_refs, sampled_refs, tiny_factory, method, options, params_id
):
    model, _ = model_and_refs
    opts = options(model, tiny_factory)
    for i, (prompt, ref) in enumerate(zip(PROMPTS, sampled_refs[params_id])):
        out = (
            hasten.generate(
                model, prompt, method=method, max_new_tokens=MAX_NEW, method_options=opts, seed=i, **SAMPLING[params_id]
            )
            .sequences[0]
            .tolist()
        )
        assert out == ref, f"{method} sampled ({params_id}) on prompt {i}: {_first_mismatch(out, ref)}"


@pytest.mark.parametrize("params_id", list(SAMPLING))
def test_sampled_trees_equal_plain_sampling(model_and_refs, sampled_refs, params_id):
    """Trees hiding the plain sampled continuation among random siblings: accepted often,
    and the output is the plain sampled one (verification rows draw by position)."""
    model, _ = model_and_refs
    accepted = 0
    for i, (prompt, ref) in enumerate(zip(PROMPTS, sampled_refs[params_id])):
        drafter = ReferenceTreeDrafter(ref, VOCAB, seed=i, width=3, depth=4)
        result = hasten.generate(model, prompt, method=drafter, max_new_tokens=MAX_NEW, seed=i, **SAMPLING[params_id])
        assert result.sequences[0].tolist() == ref, f"prompt {i}: {_first_mismatch(result.sequences[0].tolist(), ref)}"
        accepted += sum(result.stats.accepted)
    assert accepted > len(PROMPTS)


def test_sampled_equality_needs_position_keyed_draws(model_and_refs, monkeypatch):
    """Negative control: draws taken in call order instead of by position (what one shared
    RNG stream gives) make drafted sampled runs differ from plain sampling."""
    import hasten.engine as engine

    class CallOrderDraws:
        def __init__(self, seed):
            self.rng = torch.Generator().manual_seed(seed)

        def __call__(self, positions):
            return torch.rand(len(positions), generator=self.rng, dtype=torch.float64).tolist()

    model, _ = model_and_refs
    params = SAMPLING["T1"]
    monkeypatch.setattr(engine, "PositionDraws", CallOrderDraws)
    differing = 0
    for i, prompt in enumerate(PROMPTS):
        ref = hasten.generate(model, prompt, max_new_tokens=MAX_NEW, seed=i, **params).sequences[0].tolist()
        drafter = ReferenceTreeDrafter(ref, VOCAB, seed=i, width=3, depth=4)
        out = hasten.generate(model, prompt, method=drafter, max_new_tokens=MAX_NEW, seed=i, **params)
        differing += out.sequences[0].tolist() != ref
    assert differing > len(PROMPTS) // 2
