"""Shared fixtures: tiny float64 models (exact numerics, so a mismatch is a logic bug)."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB = 96
SLIDING_WINDOW = 8  # tiny sliding-window models: prompts and outputs run far past it


@pytest.fixture(autouse=True, scope="session")
def _one_thread_for_tiny_models():
    """Tiny models are dominated by per-op overhead; intra-op threads only add contention
    (tests/test_real_model.py raises the count for the real model)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_cost_cache(tmp_path_factory):
    """Cost curves (``draft_budget="auto"``) go to a per-session file, never to the user's
    ``~/.cache/hasten/cost.json``: a curve once measured on a busy machine must not steer a
    later test run, and tests must not overwrite the user's curves."""
    from hasten import cost

    path = tmp_path_factory.mktemp("user-cache") / "cost.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cost, "default_cost_cache_path", lambda: path)
        yield path


# A quiet measurement of the 2-layer tiny llama on 1 thread (ms per forward over 1..32 new
# tokens, hasten.cost.DEFAULT_SIZES): nearly flat, as per-op overhead dominates tiny models.
TINY_CURVE_MS = (1.4, 1.65, 1.65, 1.68, 1.72, 1.77, 1.85, 1.9, 2.0, 2.05)


@pytest.fixture(autouse=True, scope="session")
def _fixed_cost_curve():
    """The draft budget of the engine and the batch decoder sizes drafts from a cost curve;
    measured during a loaded test run it is noise, and a test's drafts (and its "some draft
    was accepted" checks) would depend on the machine's load. Tests get one fixed curve;
    the measurement itself is tested in test_budget.py / test_hardening.py through
    ``hasten.cost`` directly, which this leaves alone."""
    from hasten import batch, cost
    from hasten.targets import transformers as hf_target

    curve = cost.CostCurve(cost.DEFAULT_SIZES, tuple(ms / 1000 for ms in TINY_CURVE_MS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hf_target, "load_or_measure", lambda model, **_: curve)
        patch.setattr(batch, "load_or_measure", lambda model, **_: curve)
        yield curve


@pytest.fixture(autouse=True)
def _private_skip_cache(tmp_path, monkeypatch):
    """``skip_cache="auto"`` (the layer_skip / early_exit default) writes to a per-test
    file, never to the user's cache: a test's search must not depend on earlier runs."""
    from hasten.drafters import _skip_search

    path = tmp_path / "user-cache" / "skip_sets.json"
    monkeypatch.setattr(_skip_search, "default_skip_cache_path", lambda: path)


def _tiny(kind: str, seed: int = 0, layers: int = 2, vocab: int = VOCAB, init: float = 0.3):
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    elif kind == "gemma3":  # sliding-window layers alternating with full-attention ones
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
        model = Gemma3ForCausalLM(
            Gemma3TextConfig(
                **common, head_dim=8, query_pre_attn_scalar=8, sliding_window=SLIDING_WINDOW, layer_types=types
            )
        )
    elif kind == "mistral":  # every layer slides
        from transformers import MistralConfig, MistralForCausalLM

        model = MistralForCausalLM(MistralConfig(**common, sliding_window=SLIDING_WINDOW))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=vocab,
                n_embd=32,
                n_layer=layers,
                n_head=4,
                n_positions=512,
                initializer_range=init,
                bos_token_id=1,
                eos_token_id=2,
            )
        )
    else:
        raise ValueError(kind)
    return model.double().eval()


@pytest.fixture(scope="session")
def tiny_factory():
    return _tiny


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_model(request):
    return _tiny(request.param)


def exactness_prompts(vocab: int = VOCAB, count: int = 32) -> list[list[int]]:
    """Prompts of 1, 2 and 3 tokens, prompts with repeated spans, prompts where no n-gram
    repeats, and mixed lengths up to 60 tokens."""
    rng = random.Random(1234)
    prompts = [[5], [17, 33], [40, 41, 42], [3, 3, 3]]
    prompts.append(list(range(10, 40)))  # all distinct: no n-gram matches
    prompts.append(rng.sample(range(3, vocab), 50))  # distinct again, shuffled
    span = [7, 19, 23, 29]
    prompts.append([11] + span + [12, 13] + span + [14] + span)  # repeated span
    prompts.append((span * 6)[:-1])  # periodic
    prompts.append([50, 51] * 10)
    while len(prompts) < count:
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 60])
        body = [rng.randrange(3, vocab) for _ in range(n)]
        if rng.random() < 0.4 and n > 6:  # copy a chunk of itself
            start = rng.randrange(0, n - 4)
            body += body[start : start + rng.randrange(3, 6)]
        prompts.append(body)
    return prompts


def pytest_configure(config):
    """Register the test-only example methods (tests/method_examples) for the session, so the
    family contract suites, which enumerate the registries, enrol them like any method."""
    import method_examples  # noqa: F401
