"""Ray Serve: two replicas of the app answer, and both are used (skipped without ray)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from .serve_live import char_tokenizer, tiny_serve_model

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")


def test_two_replicas_answer_and_both_are_used(tmp_path):
    from ray import serve

    from hasten.serve import ServeConfig
    from hasten.serve.ray_app import build_deployment

    folder = tmp_path / "tiny"
    tiny_serve_model().save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            build_deployment(str(folder), "float64", ServeConfig(model_name="tiny", draft_budget=None), 2, threads=0),
            route_prefix="/",
        )
        seen, texts = set(), set()
        deadline = time.time() + 120
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}
        while len(seen) < 2 and time.time() < deadline:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200
            seen.add(r.headers["x-hasten-replica"])
            texts.add(r.json()["choices"][0]["message"]["content"])
        assert len(seen) == 2 and len(texts) == 1  # both replicas served, with the same output
    finally:
        serve.shutdown()
        ray.shutdown()
