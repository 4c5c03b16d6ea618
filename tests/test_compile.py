"""Compiled verification: a failed compile falls back to eager with a warning and the same
tokens; a working compile gives the same tokens as eager."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import exactness_prompts

import hasten
from hasten.compile import CompileConfig, CompileFallbackWarning

METHODS = [None, "prompt_lookup", "trie", "recycling"]


class FailingBackend:
    """A torch.compile backend that raises on its ``fail_on``-th graph (1-based) and
    counts how often it was asked."""

    def __init__(self, fail_on: int = 1):
        self.fail_on, self.calls = fail_on, 0

    def __call__(self, graph_module, example_inputs):
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("forced compile failure")
        return graph_module.forward


@pytest.fixture(scope="module")
def model(tiny_factory):
    return tiny_factory("llama", seed=5)


def eager_outputs(model, prompts, n=24):
    return {
        (m, i): hasten.generate(model, p, method=m, max_new_tokens=n, eos_token_id=[]).sequences
        for m in METHODS
        for i, p in enumerate(prompts)
    }


def test_forced_compile_failure_falls_back_with_identical_tokens(model):
    prompts = exactness_prompts(count=3)
    expected = eager_outputs(model, prompts)
    torch._dynamo.reset()
    with pytest.warns(CompileFallbackWarning, match="forced compile failure"):
        compiled = hasten.compile_model(model, CompileConfig(backend=FailingBackend(), buckets=(1, 2)))
    assert not compiled.compiled and "forced compile failure" in compiled.fallback_reason
    assert compiled.compile_seconds > 0
    for (m, i), seqs in expected.items():
        got = hasten.generate(compiled, prompts[i], method=m, max_new_tokens=24, eos_token_id=[]).sequences
        assert torch.equal(got, seqs), (m, i)


def test_failure_in_the_middle_of_generation_rolls_the_cache_back(model):
    """Compiled lazily; the backend fails on a later graph, mid-generation, after some
    compiled forwards already ran: the cache is rolled back and the step redone eagerly."""
    prompts = exactness_prompts(count=2)
    expected = eager_outputs(model, prompts)
    for m in METHODS:
        torch._dynamo.reset()
        backend = FailingBackend(fail_on=2)
        compiled = hasten.compile_model(model, CompileConfig(backend=backend), warm_up=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = [
                hasten.generate(compiled, p, method=m, max_new_tokens=24, eos_token_id=[]).sequences for p in prompts
            ]
        assert backend.calls >= 2, "the test needs the backend to fail after a successful graph"
        assert any(issubclass(w.category, CompileFallbackWarning) for w in caught)
        for i, seqs in enumerate(got):
            assert torch.equal(seqs, expected[(m, i)]), (m, i)


def test_compiled_forward_gives_the_same_tokens(model):
    """The "eager" backend traces with dynamo (graph capture, guards, dynamic shapes) and
    runs the captured graph: the engine's compiled path, without C++ code generation."""
    prompts = exactness_prompts(count=3)
    expected = eager_outputs(model, prompts)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)
        compiled = hasten.compile_model(model, CompileConfig(backend="eager", buckets=(1, 2, 4)))
        assert compiled.compiled
        for (m, i), seqs in expected.items():
            got = hasten.generate(compiled, prompts[i], method=m, max_new_tokens=24, eos_token_id=[]).sequences
            assert torch.equal(got, seqs), (m, i)


def test_config_validation():
    for bad in [
        dict(buckets=()),
        dict(buckets=(4, 2)),
        dict(buckets=(0, 1)),
        dict(buckets=(1, 32), eager_above=16),
        dict(warmup_context=0),
    ]:
        with pytest.raises(ValueError):
            CompileConfig(**bad)
