"""Peer adapters: forward counting, transformers peers, and the llama.cpp adapter against a
stand-in that follows llama-cpp-python's documented API (the real package is optional)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from hasten.bench.peers import ForwardTimer, LlamaCppContender, PeerContext, Request, build_contenders, gguf_precision
from hasten.bench.tiny import tiny_random
from hasten.drafters.draft_model import truncated_copy
from hasten.sampling import SamplingParams


@pytest.fixture(scope="module")
def tiny():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_random(seed=5)
    torch.set_num_threads(threads)


def test_forward_timer_counts_only_its_module_and_removes_its_hooks(tiny):
    model, _ = tiny
    draft = truncated_copy(model, 1)  # shares the target's hook tables
    ticks = iter(range(1000))
    timer = ForwardTimer(model, lambda: float(next(ticks)))
    ids = torch.tensor([[5, 6, 7]])
    with timer, torch.inference_mode():
        model(input_ids=ids)
        draft(input_ids=ids)
        model(input_ids=ids)
    assert timer.calls == 2 and timer.seconds == 2.0
    with torch.inference_mode():
        model(input_ids=ids)
    assert timer.calls == 2 and not model._forward_hooks and not model._forward_pre_hooks


def test_transformers_peers_match_plain_decoding(tiny):
    model, tok = tiny
    ctx = PeerContext(model, "tiny-random", lambda: 0.0, draft=truncated_copy(model, 1), prompt_lookup_tokens=4)
    contenders = build_contenders(["ar", "hf_greedy", "hf_prompt_lookup", "hf_assisted"], ctx)
    prompt = tok("abcabcabcabcab")["input_ids"]
    request = Request(max_new_tokens=20, eos_token_ids=(2,))
    outs = {c.name: c.generate(prompt, request) for c in contenders}
    for name, out in outs.items():
        assert out.new_ids == outs["ar"].new_ids, name
        assert out.forward_passes is not None and 1 <= out.forward_passes <= len(out.new_ids)
    assert outs["hf_greedy"].forward_passes == len(outs["hf_greedy"].new_ids)
    # transformers' assisted decoding verifies candidates in its very first forward, with the
    # prompt: every forward is a step and tau = tokens / forwards (not (tokens - 1) / (forwards - 1))
    for name in ("hf_prompt_lookup", "hf_assisted"):
        assert outs[name].prefill_tokens == 0 and outs[name].steps == outs[name].forward_passes, name
    assert outs["hf_greedy"].prefill_tokens == 1 and outs["hf_greedy"].steps is None
    assert model.generation_config is not ctx.draft.generation_config  # transformers may edit the draft's


def test_sampling_request_reaches_transformers(tiny):
    model, tok = tiny
    hf = build_contenders(["hf_greedy"], PeerContext(model, "tiny-random", lambda: 0.0))[0]
    request = Request(max_new_tokens=8, sampling=SamplingParams(do_sample=True, temperature=1.5), seed=1)
    a, b = hf.generate([5, 6, 7], request), hf.generate([5, 6, 7], request)
    assert a.new_ids == b.new_ids  # seeded
    other = hf.generate([5, 6, 7], Request(max_new_tokens=8, sampling=request.sampling, seed=2))
    assert other.new_ids != a.new_ids


def test_gguf_precision():
    assert gguf_precision("SmolLM2-135M-Instruct.Q4_1.gguf") == "Q4_1"
    assert gguf_precision("/x/model-f16.gguf") == "F16"
    assert gguf_precision("model.gguf") == "gguf"


class FakeLlama:
    """Follows llama_cpp.Llama: generate() yields token ids forever; reset() clears state."""

    instances: list = []

    def __init__(self, model_path, **kwargs):
        self.model_path, self.kwargs, self.calls, self.resets = model_path, kwargs, [], 0
        FakeLlama.instances.append(self)

    def reset(self):
        self.resets += 1

    def generate(self, tokens, **kwargs):
        self.calls.append((list(tokens), kwargs, self.resets))
        token = 10
        while True:
            yield token
            token += 1


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    package = types.ModuleType("llama_cpp")
    package.__version__ = "0.0-test"
    package.Llama = FakeLlama
    speculative = types.ModuleType("llama_cpp.llama_speculative")

    class LlamaPromptLookupDecoding:
        def __init__(self, max_ngram_size=2, num_pred_tokens=10):
            self.num_pred_tokens = num_pred_tokens

    speculative.LlamaPromptLookupDecoding = LlamaPromptLookupDecoding
    monkeypatch.setitem(sys.modules, "llama_cpp", package)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_speculative", speculative)
    FakeLlama.instances = []


def test_llamacpp_adapter(fake_llama_cpp):
    plain = LlamaCppContender("llamacpp", "/m/SmolLM2.Q4_1.gguf", threads=2, context_length=512)
    lookup = LlamaCppContender(
        "llamacpp_prompt_lookup", "/m/SmolLM2.Q4_1.gguf", threads=2, context_length=512, prompt_lookup_tokens=7
    )
    assert plain.precision == "Q4_1" and plain.llm.kwargs["draft_model"] is None
    assert lookup.llm.kwargs["draft_model"].num_pred_tokens == 7
    assert plain.llm.kwargs["n_threads"] == 2 and plain.llm.kwargs["n_ctx"] == 512
    out = plain.generate([1, 2, 3], Request(max_new_tokens=5, eos_token_ids=(99,)))
    assert out.new_ids == [10, 11, 12, 13, 14] and out.finish_reason == "max_new_tokens"
    out = plain.generate([1, 2, 3], Request(max_new_tokens=50, eos_token_ids=(12,)))
    assert out.new_ids == [10, 11, 12] and out.finish_reason == "eos"
    tokens, kwargs, resets = plain.llm.calls[-1]
    assert tokens == [1, 2, 3] and kwargs["temp"] == 0.0 and resets == 2  # greedy, fresh KV cache each call
