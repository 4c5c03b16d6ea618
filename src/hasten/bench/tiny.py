"""``--model tiny-random``: a tiny randomly initialized Llama and a byte-level tokenizer,
built locally in a fraction of a second, so the whole bench pipeline can be smoke-tested
with no weights and no network. Its speed numbers mean nothing."""

from __future__ import annotations

import torch

__all__ = ["TINY_RANDOM", "tiny_random"]

TINY_RANDOM = "tiny-random"
_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` over the 256 byte symbols plus <pad>=0, <s>=1, </s>=2,
    with a minimal chat template (vocabulary 259)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def tiny_random(seed: int = 0, dtype: torch.dtype = torch.float32, context_length: int = 2048):
    """(model, tokenizer): a 2-layer Llama (hidden 64) with random weights from ``seed``.

    Args:
        seed: weight initialization seed.
        dtype: parameter dtype.
        context_length: ``max_position_embeddings`` (tokens); longer prompts are refused
            by :func:`hasten.generate`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config).to(dtype).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    return model, tokenizer
