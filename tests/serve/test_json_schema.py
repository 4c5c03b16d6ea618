"""Grammar-safe drafting: response_format json_schema / json_object outputs parse and validate,
and greedy output equals constrained plain decoding (a one-screen reference), concurrently too."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from hasten.serve.app import chat_prompt_ids
from hasten.serve.grammar import GrammarFactory, constrained_greedy_reference

from .serve_live import serving

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "tag": {"enum": ["aa", "ab", "ba"]},
    },
    "required": ["ok", "color", "tag"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "pick", "schema": SCHEMA}}
PROMPTS = [
    "pick one",
    "red or blue?",
    '{"ok": true, "color": "red"} again {"ok":',
    "x",
    "colors colors",
    "tag: aa, ab, ba",
    "json please",
    "true false true",
    "green",
    "{}{}{}",
]


def valid(text: str) -> bool:
    obj = json.loads(text)
    return (
        set(obj) == {"ok", "color", "tag"}
        and isinstance(obj["ok"], bool)
        and obj["color"] in ("red", "green", "blue")
        and obj["tag"] in ("aa", "ab", "ba")
    )


@pytest.fixture(scope="module")
def expected(tiny_setup):
    model, tokenizer = tiny_setup
    factory = GrammarFactory(tokenizer, 128, [2])
    out = []
    for text in PROMPTS:
        prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": text}])
        tokens = constrained_greedy_reference(model, prompt, factory.constraint(factory.compile(FORMAT)), 60, {2})
        out.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return out


def test_reference_is_valid_and_not_unconstrained(tiny_setup, expected):
    assert all(valid(text) for text in expected)
    model, tokenizer = tiny_setup
    import hasten

    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": PROMPTS[0]}])
    free = hasten.generate(model, prompt, max_new_tokens=20, eos_token_id=[])
    free_text = tokenizer.decode(free.sequences[0, len(prompt) :].tolist())
    assert free_text != expected[0]  # negative control: the grammar changes what the model writes


@pytest.mark.parametrize("method", [None, "prompt_lookup", "suffix"])
def test_ten_requests_valid_and_equal_constrained_plain_decoding(tiny_setup, expected, method):
    model, tokenizer = tiny_setup

    def body(text):
        return {
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 60,
            "temperature": 0,
            "response_format": FORMAT,
            "hasten": {"method": method},
        }

    with serving(model, tokenizer, max_batch=8) as live:
        sequential = [
            httpx.post(live.url + "/v1/chat/completions", json=body(t), timeout=60).json() for t in PROMPTS[:4]
        ]

        async def concurrent():
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as ac:
                return await asyncio.gather(*[ac.post("/v1/chat/completions", json=body(t)) for t in PROMPTS[4:]])

        together = [r.json() for r in asyncio.run(concurrent())]
    texts = [r["choices"][0]["message"]["content"] for r in sequential + together]
    assert all(valid(t) for t in texts)
    assert texts == expected


def test_json_object_parses(tiny_setup):
    model, tokenizer = tiny_setup
    with serving(model, tokenizer, method="prompt_lookup") as live:
        r = httpx.post(
            live.url + "/v1/chat/completions",
            timeout=60,
            json={
                "messages": [{"role": "user", "content": "obj"}],
                "max_tokens": 80,
                "temperature": 0,
                "response_format": {"type": "json_object"},
            },
        )
        bad = httpx.post(
            live.url + "/v1/chat/completions",
            timeout=60,
            json={"messages": [{"role": "user", "content": "obj"}], "response_format": {"type": "xml"}},
        )
    choice = r.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        json.loads(choice["message"]["content"])
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"


def test_tree_masks_cut_forbidden_nodes_and_keep_the_state(tiny_setup):
    """Hand-built tree under the schema {"enum": ["ab", "ac"]} (JSON text "ab" or "ac" with quotes)."""
    from hasten.tree import DraftTree

    _, tokenizer = tiny_setup
    factory = GrammarFactory(tokenizer, 128, [2])
    constraint = factory.constraint(
        factory.compile({"type": "json_schema", "json_schema": {"schema": {"enum": ["ab", "ac"]}}})
    )

    def tid(ch):
        return tokenizer.convert_tokens_to_ids(ch)

    # node 0 '"' (root child), 1 'a' (under 0), 2 'b' (under 1), 3 'z' (under 1, forbidden), 4 'x' (root, forbidden)
    draft = DraftTree((tid('"'), tid("a"), tid("b"), tid("z"), tid("x")), (-1, 0, 1, 1, -1))
    cut, masks = constraint.tree_masks(draft)
    assert cut.tokens == (tid('"'), tid("a"), tid("b")) and cut.parents == (-1, 0, 1)
    allowed = [set(m.nonzero().flatten().tolist()) for m in masks]
    assert allowed[0] == {tid('"')}
    assert allowed[1] == {tid("a")}
    assert allowed[2] == {tid("b"), tid("c")}
    assert allowed[3] == {tid('"')}
    assert set(constraint.allowed().nonzero().flatten().tolist()) == {tid('"')}  # state unchanged
    constraint.accept([tid('"'), tid("a")])  # state advances only on committed tokens
    assert set(constraint.allowed().nonzero().flatten().tolist()) == {tid("b"), tid("c")}
