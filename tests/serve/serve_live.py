"""Live-server helpers: a tiny float64 Llama with a character-level tokenizer (exact
numerics, fast), served by uvicorn on 127.0.0.1 and an ephemeral port in a thread."""

from __future__ import annotations

import contextlib
import threading
import time

import torch

SERVE_VOCAB = 128
CHARS = [chr(c) for c in range(32, 127)] + [chr(c) for c in range(161, 191)]  # ids 3..127, one char each


def char_tokenizer():
    """A fast tokenizer: one token per printable ASCII character, <pad>=0, <s>=1, </s>=2,
    and a tiny chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(CHARS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'][0] }}:{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}a:{% endif %}"
    )
    return fast


def tiny_serve_model(seed: int = 0):
    """A float64 2-layer Llama (the same shape as tests/conftest.py's tiny models), context 256."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=SERVE_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).double().eval()


class LiveServer:
    """uvicorn serving ``app`` in a daemon thread; ``url`` once started."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=30)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextlib.contextmanager
def serving(model, tokenizer, **config):
    from hasten.serve import ServeConfig, create_app

    config.setdefault("model_name", "tiny")
    config.setdefault("draft_budget", None)
    with LiveServer(create_app(model, tokenizer, ServeConfig(**config))) as server:
        yield server
