"""Sliding-window attention: Gemma 3 mixes sliding and full-attention layers, Mistral
slides in every layer. A chain is verified with the model's own masks, but a token tree
brings its own 4-D mask, which must hide from each row what that row's window hides and
match the keys a sliding layer hands to attention. Windows of 8 tokens here, so every
prompt and output runs far past them."""

from __future__ import annotations

import pytest
from conftest import SLIDING_WINDOW
from test_exactness import MAX_NEW, PROMPTS, _first_mismatch, assert_trees_exact, method_cases, transformers_greedy

import hasten
from hasten import kv

CASES = PROMPTS[:12]


@pytest.fixture(scope="module", params=["gemma3", "mistral"])
def sliding_model_and_refs(request, tiny_factory):
    model = tiny_factory(request.param)
    assert SLIDING_WINDOW in kv.attention_windows(model)
    return model, transformers_greedy(model, CASES)


def test_plain_path_equals_transformers(sliding_model_and_refs):
    model, refs = sliding_model_and_refs
    for prompt, ref in zip(CASES, refs):
        assert hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences[0].tolist() == ref


@pytest.mark.parametrize("width,depth", [(3, 4), (2, 7)])
def test_trees_past_the_window_are_token_identical(sliding_model_and_refs, width, depth):
    model, refs = sliding_model_and_refs
    assert_trees_exact(model, CASES, refs, width, depth)


@pytest.mark.parametrize("method,options", list(method_cases()))
def test_methods_are_token_identical(sliding_model_and_refs, tiny_factory, method, options):
    model, refs = sliding_model_and_refs
    opts = options(model, tiny_factory)
    for prompt, ref in zip(CASES, refs):
        out = (
            hasten.generate(model, prompt, method=method, max_new_tokens=MAX_NEW, method_options=opts)
            .sequences[0]
            .tolist()
        )
        assert out == ref, f"{method}, prompt {prompt[:8]}: {_first_mismatch(out, ref)}"


def test_tree_masks_follow_each_layer_type(tiny_factory):
    """Hand-checked masks: 10 cached tokens, window 8, a root with one child (depth 1)."""
    from hasten.targets import TransformersTarget
    from hasten.tree import DraftTree

    target = TransformersTarget(tiny_factory("gemma3"))
    positions, masks = target.tree_inputs(10, DraftTree((5,), (-1,)))
    assert positions.tolist() == [[10, 11]]
    full, sliding = masks["full_attention"][0, 0] == 0, masks["sliding_attention"][0, 0] == 0
    assert full.tolist() == [[True] * 11 + [False], [True] * 12]
    # a sliding layer hands attention keys 3..11 (the last 8 - 1 + 2); the root at
    # position 10 sees 3..10, the child at 11 sees 4..11
    assert sliding.tolist() == [[True] * 8 + [False], [False] + [True] * 8]
