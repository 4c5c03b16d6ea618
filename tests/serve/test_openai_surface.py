"""The OpenAI surface on a live server: official client, streaming, exactness vs hasten.generate,
concurrency, Predicted Outputs, errors, limits, disconnects, metrics (tiny float64 model)."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import openai
import pytest

import hasten
from hasten.drafters.base import METHODS, Drafter, MethodSpec, register
from hasten.serve.app import chat_prompt_ids

from .serve_live import serving

MESSAGES = [
    [{"role": "user", "content": text}]
    for text in [
        "hello hello hello",
        "abcabcabcabc",
        "the cat sat on the mat, the cat",
        "1 2 3 1 2 3 1 2",
        "xyz",
        "spam and eggs and spam",
        "zzzz zzzz",
        "what is it? it is what it is",
    ]
]


def reference(model, tokenizer, messages, method=None, max_tokens=24, **kw) -> tuple[str, int]:
    prompt = chat_prompt_ids(tokenizer, messages)
    out = hasten.generate(model, prompt, method=method, max_new_tokens=max_tokens, draft_budget=None, **kw)
    return tokenizer.decode(out.sequences[0, len(prompt) :].tolist(), skip_special_tokens=True), out.stats


@pytest.fixture(scope="module")
def server(tiny_setup):
    model, tokenizer = tiny_setup
    with serving(model, tokenizer, method="prompt_lookup", max_batch=8) as live:
        yield live


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_chat_template_is_the_models(tiny_setup):
    model, tokenizer = tiny_setup
    ids = tokenizer.apply_chat_template(MESSAGES[0], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert chat_prompt_ids(tokenizer, MESSAGES[0]) == list(ids["input_ids"])


@pytest.mark.parametrize("method", [None, "prompt_lookup", "suffix"])
def test_official_client_equals_generate(server, tiny_setup, method):
    model, tokenizer = tiny_setup
    c = client(server)
    for messages in MESSAGES[:3]:
        expected, stats = reference(model, tokenizer, messages, method)
        resp = c.chat.completions.create(
            model="tiny", messages=messages, max_tokens=24, temperature=0, extra_body={"hasten": {"method": method}}
        )
        assert resp.choices[0].message.content == expected
        assert resp.usage.completion_tokens == stats.new_tokens
        assert resp.model_extra is not None
        figures = resp.usage.model_extra["hasten"]
        assert figures["method"] == ("ar" if method is None else method)
        chunks = c.chat.completions.create(
            model="tiny",
            messages=messages,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"hasten": {"method": method}},
        )
        chunks = list(chunks)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == expected  # streamed chunks concatenate to the non-streamed text
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == stats.new_tokens
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == resp.choices[0].finish_reason


def test_sampling_with_seed_equals_generate(server, tiny_setup):
    model, tokenizer = tiny_setup
    expected, _ = reference(
        model, tokenizer, MESSAGES[1], "prompt_lookup", do_sample=True, temperature=0.8, top_p=0.9, seed=7
    )
    resp = client(server).chat.completions.create(
        model="tiny", messages=MESSAGES[1], max_tokens=24, temperature=0.8, top_p=0.9, seed=7
    )
    assert resp.choices[0].message.content == expected
    other = client(server).chat.completions.create(
        model="tiny", messages=MESSAGES[1], max_tokens=24, temperature=0.8, top_p=0.9, seed=8
    )
    assert other.choices[0].message.content != expected  # negative control: the seed matters


def test_completions_endpoint_and_stop(server, tiny_setup):
    model, tokenizer = tiny_setup
    prompt = tokenizer("abcabcabc")["input_ids"]
    full = hasten.generate(model, prompt, method="prompt_lookup", max_new_tokens=24)
    text = tokenizer.decode(full.sequences[0, len(prompt) :].tolist(), skip_special_tokens=True)
    resp = client(server).completions.create(model="tiny", prompt="abcabcabc", max_tokens=24, temperature=0)
    assert resp.choices[0].text == text
    stop = text[6:8]
    cut = client(server).completions.create(model="tiny", prompt="abcabcabc", max_tokens=24, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client(server).completions.create(
        model="tiny", prompt="abcabcabc", max_tokens=24, temperature=0, stop=[stop], stream=True
    )
    assert "".join(ch.choices[0].text for ch in streamed if ch.choices) == cut.choices[0].text


def test_eight_concurrent_clients_get_their_sequential_outputs(server, tiny_setup):
    model, tokenizer = tiny_setup
    expected = [reference(model, tokenizer, m, "prompt_lookup", max_tokens=32)[0] for m in MESSAGES]

    async def main():
        c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        calls = [c.chat.completions.create(model="tiny", messages=m, max_tokens=32, temperature=0) for m in MESSAGES]
        return await asyncio.gather(*calls)

    got = [r.choices[0].message.content for r in asyncio.run(main())]
    assert got == expected


def test_predicted_outputs_same_output_and_counts(server, tiny_setup):
    model, tokenizer = tiny_setup
    printable = range(3, 128)
    for messages in MESSAGES:  # a prompt whose first 12 greedy tokens are printable characters
        prompt = chat_prompt_ids(tokenizer, messages)
        greedy = hasten.generate(model, prompt, max_new_tokens=12, eos_token_id=[]).sequences[0, len(prompt) :]
        if all(int(t) in printable for t in greedy):
            break
    else:
        pytest.skip("no prompt with a printable greedy output")
    greedy = greedy.tolist()
    junk = [t for t in printable if t not in greedy][:3]
    prediction = tokenizer.decode(greedy[:5] + junk)
    c = client(server)
    plain = c.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0)
    predicted = c.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=12,
        temperature=0,
        prediction={"type": "content", "content": prediction},
    )
    assert predicted.choices[0].message.content == plain.choices[0].message.content
    details = predicted.usage.completion_tokens_details
    # hand count: the first 5 prediction tokens appear in the output in place, the 3 junk tokens never do
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (5, 3)
    exact = tokenizer.decode(greedy)
    whole = c.chat.completions.create(
        model="tiny", messages=messages, max_tokens=12, temperature=0, prediction={"type": "content", "content": exact}
    )
    assert whole.choices[0].message.content == plain.choices[0].message.content
    assert whole.usage.completion_tokens_details.accepted_prediction_tokens == 12
    assert whole.usage.completion_tokens_details.rejected_prediction_tokens == 0
    assert whole.usage.model_extra["hasten"]["forward_passes"] < plain.usage.model_extra["hasten"]["forward_passes"]


BAD = [
    ({"model": "tiny"}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "hasten": {"method": "no_such_method"}}, "hasten.method"),
    (
        {
            "messages": [{"role": "user", "content": "hi"}],
            "hasten": {"method": "prompt_lookup", "options": {"bogus": 1}},
        },
        "hasten.options",
    ),
    ({"messages": [{"role": "user", "content": "x" * 400}]}, "messages"),
]


@pytest.mark.parametrize("body,param", BAD)
def test_bad_requests_are_400_with_openai_error_shape(server, body, param):
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_unknown_fields_are_ignored(server):
    r = httpx.post(
        server.url + "/v1/chat/completions",
        timeout=30,
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
            "logit_bias": {},
            "user": "me",
            "some_future_field": [1, 2],
        },
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


def test_openai_client_raises_bad_request(server):
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x" * 400}])


class _Boom(Drafter):
    name = "boom_test"

    def propose(self, tokens, max_depth):
        if len(tokens) > 20:
            raise RuntimeError("drafter exploded")


def test_generation_error_is_500_and_server_keeps_serving(server):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class BoomConfig:
        pass

    register(MethodSpec("boom_test", BoomConfig, lambda config: _Boom(), "test drafter that fails"))
    try:  # a throw-away method: never left registered for other test files in this worker
        r = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=30,
            json={
                "messages": [{"role": "user", "content": "hello there"}],
                "max_tokens": 30,
                "hasten": {"method": "boom_test"},
            },
        )
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        ok = httpx.post(
            server.url + "/v1/chat/completions",
            timeout=30,
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        assert ok.status_code == 200
    finally:
        METHODS.unregister("boom_test")


def test_models_and_health(server):
    assert httpx.get(server.url + "/v1/models").json()["data"][0]["id"] == "tiny"
    assert client(server).models.list().data[0].id == "tiny"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def _metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_by_the_right_amounts(server, tiny_setup):
    """The counters move by what the request itself reports in ``usage`` (the server's own
    draft sizing can differ from a library run's: it cuts drafts to what pays for the batch)."""
    model, tokenizer = tiny_setup
    messages = MESSAGES[1]
    names = [
        "hasten:spec_decode_num_drafts_total",
        "hasten:spec_decode_num_draft_tokens_total",
        "hasten:spec_decode_num_accepted_tokens_total",
        "hasten:generation_tokens_total",
        "hasten:prompt_tokens_total",
        "hasten:request_success_total",
    ]
    before = httpx.get(server.url + "/metrics").text
    response = client(server).chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=30,
        temperature=0,
        extra_body={"hasten": {"method": "prompt_lookup"}},
    )
    after = httpx.get(server.url + "/metrics").text
    usage = response.usage.model_dump()
    figures = usage["hasten"]
    delta = {n: _metric(after, n) - _metric(before, n) for n in names}
    assert figures["drafted"] > 0, "the known request must draft"
    assert delta[names[1]] == figures["drafted"]
    assert delta[names[2]] == figures["accepted"]
    assert delta[names[3]] == usage["completion_tokens"]
    assert delta[names[4]] == usage["prompt_tokens"]
    assert delta[names[5]] == 1
    assert 1 <= delta[names[0]] <= min(figures["steps"], figures["drafted"])
    pos0 = "hasten:spec_decode_num_accepted_tokens_per_pos_total"
    moved0 = _metric(after, pos0, position=0) - _metric(before, pos0, position=0)
    assert (moved0 >= 1) == (figures["accepted"] >= 1) and moved0 <= delta[names[0]]
    assert re.search(r"hasten:time_to_first_token_seconds_count\{[^}]*\} [1-9]", after)
    assert re.search(r"hasten:inter_token_latency_seconds_count\{[^}]*\} [1-9]", after)


def test_queue_full_is_429_and_disconnect_frees_the_row(tiny_setup):
    model, tokenizer = tiny_setup
    for content in ["go", "run", "long", "again", "more", "x y z", "abc", "keep going"]:
        messages = [{"role": "user", "content": content}]
        greedy = hasten.generate(model, chat_prompt_ids(tokenizer, messages), max_new_tokens=220)
        if greedy.stats.new_tokens == 220:  # precondition: the long request must not stop early
            break
    else:
        pytest.fail("no prompt whose greedy output runs 220 tokens")
    long_body = {"messages": messages, "max_tokens": 220, "stream": True, "temperature": 0, "hasten": {"method": None}}
    with serving(model, tokenizer, max_batch=1, max_queue=1) as live:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=long_body) as first:
                lines = first.iter_lines()
                next(line for line in lines if line.startswith("data:"))  # the row is taken

                async def queued_then_full():
                    async with httpx.AsyncClient(base_url=live.url, timeout=60) as ac:
                        waiting = asyncio.create_task(
                            ac.post(
                                "/v1/chat/completions",
                                json={"messages": [{"role": "user", "content": "q"}], "max_tokens": 2},
                            )
                        )
                        deadline = time.time() + 30
                        while (await ac.get("/health")).json()["waiting"] < 1:
                            assert time.time() < deadline, "the second request never queued"
                            await asyncio.sleep(0.02)
                        full = await ac.post(
                            "/v1/chat/completions",
                            json={"messages": [{"role": "user", "content": "r"}], "max_tokens": 2},
                        )
                        waiting.cancel()
                        return full

                full = asyncio.run(queued_then_full())
                assert full.status_code == 429 and "Retry-After" in full.headers
                assert full.json()["error"]["code"] == "rate_limit_exceeded"
            # the stream is closed mid-generation: its row must be freed
            deadline = time.time() + 20
            while httpx.get(live.url + "/health").json()["running"] and time.time() < deadline:
                time.sleep(0.05)
            health = httpx.get(live.url + "/health").json()
            assert health["running"] == 0 and health["waiting"] == 0
            start = time.time()
            r = http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "next"}], "max_tokens": 3}
            )
            assert r.status_code == 200 and time.time() - start < 10  # served at once, not after 220 tokens
