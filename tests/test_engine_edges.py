"""Edge cases of the decode loop: budgets, eos inside drafts, stop strings, state leaks,
bad input."""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB
from drafter_zoo import ReferenceChainDrafter

import hasten


class CharTokenizer:
    """Token id i decodes to the i-th two-letter string: stop strings span tokens."""

    pieces = [chr(97 + i % 26) + chr(97 + (i // 26) % 26) for i in range(VOCAB)]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids)


@pytest.fixture(scope="module")
def model(tiny_factory):
    return tiny_factory("llama")


def reference(model, prompt, n, **kw):
    return model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=n,
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        **kw,
    )[0].tolist()


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_tiny_budgets_with_long_drafts(model, budget):
    prompt = [11, 12, 13]
    ref = reference(model, prompt, 20, eos_token_id=None)
    drafter = ReferenceChainDrafter(ref, VOCAB, length=5, corrupt=0.0)
    result = hasten.generate(model, prompt, method=drafter, max_new_tokens=budget, eos_token_id=[], draft_budget=None)
    assert result.sequences[0].tolist() == ref[: len(prompt) + budget]
    assert all(d <= budget - 1 for d in result.stats.drafted)
    assert result.stats.finish_reason == "max_new_tokens"


def test_eos_inside_an_accepted_block(model):
    prompt = [30, 31, 32, 33]
    free = reference(model, prompt, 24, eos_token_id=None)
    eos = free[len(prompt) + 5]  # a token the model emits mid-way
    ref = reference(model, prompt, 24, eos_token_id=eos)
    drafter = ReferenceChainDrafter(free, VOCAB, length=8, corrupt=0.0)
    result = hasten.generate(model, prompt, method=drafter, max_new_tokens=24, eos_token_id=eos, draft_budget=None)
    assert result.sequences[0].tolist() == ref
    assert result.sequences[0, -1].item() == eos and result.stats.finish_reason == "eos"
    assert max(result.stats.drafted) == 8  # eos arrived inside a fully drafted block
    # tau counts committed tokens: the tokens accepted after eos were cut, not counted
    s = result.stats
    assert sum(s.committed) == s.new_tokens == len(ref) - len(prompt)
    assert s.mean_accepted_tokens == s.new_tokens / s.steps and s.accepted[-1] <= s.committed[-1]


def test_stop_string_spanning_tokens_streamed_and_returned(model):
    tok = CharTokenizer()
    prompt = [40, 41, 42]
    free = reference(model, prompt, 30, eos_token_id=None)
    text = tok.decode(free[len(prompt) :])
    stop = text[9:12]  # 3 chars: starts mid-token, spans a boundary
    streamed: list[int] = []
    drafter = ReferenceChainDrafter(free, VOCAB, length=6, corrupt=0.0)
    result = hasten.generate(
        model,
        prompt,
        method=drafter,
        max_new_tokens=30,
        eos_token_id=[],
        stop=[stop],
        tokenizer=tok,
        streamer=streamed.extend,
    )
    new = result.sequences[0, len(prompt) :].tolist()
    assert new == streamed
    assert stop in tok.decode(new) and stop not in tok.decode(new[:-1])
    assert new == free[len(prompt) : len(prompt) + len(new)]
    assert result.text == tok.decode(new) and result.stats.finish_reason == "stop_string"
    assert sum(result.stats.committed) == len(new)  # nothing past the stop string counted


@pytest.mark.parametrize("method", ["prompt_lookup", "draft_model"])
def test_no_state_leaks_between_calls(model, tiny_factory, method):
    opts = {"draft_model": tiny_factory("llama", seed=7, layers=1)} if method == "draft_model" else {}
    a = [9, 8, 7, 6, 9, 8, 7, 6, 9, 8]
    b = [20, 21]
    fresh_a = hasten.generate(model, a, method=method, method_options=opts, max_new_tokens=20)
    fresh_b = hasten.generate(model, b, method=method, method_options=opts, max_new_tokens=20)
    drafter = hasten.drafters.build_drafter(method, **opts)
    runs = [hasten.generate(model, p, method=drafter, max_new_tokens=20) for p in (a, b, a)]
    assert torch.equal(runs[0].sequences, fresh_a.sequences)
    assert torch.equal(runs[1].sequences, fresh_b.sequences)
    assert torch.equal(runs[2].sequences, fresh_a.sequences)
    assert runs[2].stats.drafted == fresh_a.stats.drafted  # same drafts: nothing carried over


def test_temperature_zero_sampling_is_greedy(model):
    prompt = [5, 6, 7]
    greedy = hasten.generate(model, prompt, max_new_tokens=16)
    for method in (None, "prompt_lookup"):
        sampled = hasten.generate(
            model, prompt, method=method, max_new_tokens=16, do_sample=True, temperature=0.0, seed=1
        )
        assert torch.equal(sampled.sequences, greedy.sequences)


def test_seeded_sampling_is_reproducible(model):
    kw = dict(max_new_tokens=16, do_sample=True, temperature=0.8, seed=42)
    assert torch.equal(hasten.generate(model, [5, 6], **kw).sequences, hasten.generate(model, [5, 6], **kw).sequences)


def test_context_length_bounds_generation(model):
    limit = model.config.max_position_embeddings
    prompt = [7] * (limit - 3)
    result = hasten.generate(model, prompt, method="prompt_lookup", max_new_tokens=10, eos_token_id=[])
    assert result.sequences.shape[1] == limit and result.stats.finish_reason == "context_length"


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="empty prompt"):
        hasten.generate(model, [], max_new_tokens=4)
    with pytest.raises(ValueError, match="context length"):
        hasten.generate(model, [5] * 600, max_new_tokens=4)
    with pytest.raises(ValueError, match="batch size"):
        hasten.generate(model, torch.ones(2, 4, dtype=torch.long), max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        hasten.generate(model, [5], max_new_tokens=0)
    with pytest.raises(ValueError, match="tokenizer"):
        hasten.generate(model, [5], stop=["x"])
    with pytest.raises(hasten.UnknownMethodError, match="prompt_lookup"):
        hasten.generate(model, [5], method="no_such_method")
    with pytest.raises(TypeError, match="unknown option"):
        hasten.generate(model, [5], method="prompt_lookup", method_options={"bogus": 1})
    with pytest.raises(ValueError, match="temperature"):
        hasten.generate(model, [5], do_sample=True, temperature=-1)
    with pytest.raises(TypeError, match="integer"):
        hasten.generate(model, torch.ones(1, 3), max_new_tokens=2)
    with pytest.raises(ValueError, match="empty prompt"):
        hasten.generate(model, torch.tensor([]), max_new_tokens=2)  # float, but empty: say empty
    for bad in (torch.tensor(5), torch.ones(1, 1, 3, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"shape \(1, T\) or \(T,\)"):
            hasten.generate(model, bad, max_new_tokens=2)
    with pytest.raises(ValueError, match="need a method"):
        hasten.generate(model, [5], draft_model=model)  # would silently decode plainly
    with pytest.raises(ValueError, match="need a method"):
        hasten.generate(model, [5], method_options={"max_ngram": 3})


def test_draft_model_with_other_vocabulary_is_refused(model, tiny_factory):
    other = tiny_factory("llama", vocab=VOCAB + 8)
    with pytest.raises(ValueError, match="vocabulary"):
        hasten.generate(model, [5, 6], method="draft_model", draft_model=other, max_new_tokens=4)
    with pytest.raises(ValueError, match="self:k"):
        hasten.generate(model, [5, 6], method="draft_model", draft_model="tiny", max_new_tokens=4)
    with pytest.raises(ValueError, match="k must be"):
        hasten.generate(model, [5, 6], method="draft_model", draft_model="self:9", max_new_tokens=4)


def test_accepts_batch_encoding_and_1d_tensor(model):
    from transformers import BatchEncoding

    ids = torch.tensor([[5, 6, 7]])
    ref = hasten.generate(model, ids, max_new_tokens=5).sequences
    assert torch.equal(hasten.generate(model, BatchEncoding({"input_ids": ids}), max_new_tokens=5).sequences, ref)
    assert torch.equal(hasten.generate(model, ids[0], max_new_tokens=5).sequences, ref)


def test_stats_are_consistent(model):
    result = hasten.generate(
        model, [9, 8, 7, 6, 9, 8, 7, 6], method="prompt_lookup", max_new_tokens=30, eos_token_id=[]
    )
    s = result.stats
    assert s.new_tokens == 30 == sum(a + 1 for a in s.accepted)  # every token came from a step
    assert s.forward_passes == 1 + s.steps  # prefill + one forward per verification step
    assert s.mean_accepted_tokens == pytest.approx(30 / s.steps)
    assert s.as_dict()["tokens_per_second"] > 0


class _ForeignBackend:
    """A model object that brings its own engine target (as LlamaCppModel does): the
    engine must use only the target protocol, and refuse drafters that need torch layers."""

    backend = "test"

    def __init__(self, model):
        self.inner = model

    def engine_target(self):
        from hasten.targets import TransformersTarget

        target = TransformersTarget(self.inner)
        target.backend = "test"
        target.max_nodes = lambda cache: 3
        target.supported_methods = lambda: ["prompt_lookup"]
        return target


def test_a_backend_model_runs_through_its_own_target(tiny_factory):
    model = tiny_factory("llama")
    prompt = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
    plain = hasten.generate(model, prompt, max_new_tokens=24, eos_token_id=[]).sequences
    foreign = _ForeignBackend(model)
    out = hasten.generate(foreign, prompt, method="trie", max_new_tokens=24, eos_token_id=[], draft_budget=None)
    assert torch.equal(out.sequences, plain)
    assert max(out.stats.drafted) <= 3  # the target's node limit was applied
    with pytest.raises(ValueError, match="model-free drafter"):
        hasten.generate(foreign, prompt, method="layer_skip", max_new_tokens=4)


def test_llamacpp_backend_without_the_package_names_the_install_command(monkeypatch, tmp_path):
    import sys

    from hasten.backends import llamacpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setattr(llamacpp, "_BACKEND_READY", False)
    with pytest.raises(ImportError, match="pip install llama-cpp-python"):
        llamacpp.LlamaCppModel(tmp_path / "model.gguf")


def test_requantize_gguf_refuses_bad_input_before_loading_llama_cpp(monkeypatch, tmp_path):
    import sys

    from hasten.backends import llamacpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # checks come before the optional package
    monkeypatch.setattr(llamacpp, "_BACKEND_READY", False)
    with pytest.raises(ValueError, match="unknown GGUF type 'q3_x'"):
        llamacpp.requantize_gguf(tmp_path / "in.gguf", tmp_path / "out.gguf", "q3_x")
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        llamacpp.requantize_gguf(tmp_path / "in.gguf", tmp_path / "out.gguf", "q4_0")
    (tmp_path / "in.gguf").write_bytes(b"GGUF")
    with pytest.raises(ImportError, match="pip install llama-cpp-python"):
        llamacpp.requantize_gguf(tmp_path / "in.gguf", tmp_path / "out.gguf", "q4_0")
    assert not (tmp_path / "out.gguf").exists()
