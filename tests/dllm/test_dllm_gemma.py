"""hasten.dllm on transformers' DiffusionGemma (tiny random config, float64 weights).

The model's logits come back in float32 (its head casts), which is deterministic on one
machine, so every comparison here is exact equality.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "DiffusionGemmaForBlockDiffusion"):  # pragma: no cover - older transformers
    pytest.skip("this transformers has no DiffusionGemma", allow_module_level=True)

import hasten.dllm as hl  # noqa: E402
from hasten.dllm.adapters import as_adapter  # noqa: E402
from hasten.dllm.gemma import DiffusionGemmaAdapter  # noqa: E402
from hasten.dllm.methods import METHODS  # noqa: E402

from .test_dllm import tiny_guide  # noqa: E402

VOCAB, CANVAS = 64, 8


def tiny_gemma(seed: int = 0, context: int = 128):
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion, DiffusionGemmaTextConfig

    text = DiffusionGemmaTextConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        global_head_dim=16,
        sliding_window=16,
        max_position_embeddings=context,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=32,
        layer_types=["sliding_attention", "full_attention"],
    )
    config = DiffusionGemmaConfig(text_config=text.to_dict(), canvas_length=CANVAS)
    config._experts_implementation = "eager"  # grouped_mm has no float64 kernel
    config.text_config._experts_implementation = "eager"
    torch.manual_seed(seed)
    return DiffusionGemmaForBlockDiffusion(config).to(torch.float64).eval()


def prompt(seed: int, rows: int = 1, length: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (rows, length), generator=g)


class RecordingSampler:
    """Wraps generate's sampler to record the random canvas it starts each block from."""

    def __init__(self, sampler, drawn):
        self.sampler, self.drawn = sampler, drawn

    def __getattr__(self, name):
        return getattr(self.sampler, name)

    def initialize_canvas(self, batch_size, device):
        canvas = self.sampler.initialize_canvas(batch_size, device)
        self.drawn.append(canvas.clone())
        return canvas


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rows", [1, 2])
def test_one_step_per_block_matches_transformers_generate(seed, rows):
    """Where both define the same procedure (one denoising step per canvas: the decoder's argmax
    over a random canvas after the encoder prefix), hasten's reference equals generate exactly."""
    model, ids = tiny_gemma(seed), prompt(seed, rows)
    drawn: list[torch.Tensor] = []
    prepare = model._prepare_sampler
    model._prepare_sampler = lambda config: RecordingSampler(prepare(config), drawn)
    torch.manual_seed(100 + seed)
    theirs = model.generate(
        ids,
        max_new_tokens=2 * CANVAS,
        max_denoising_steps=1,
        eos_token_id=None,
        pad_token_id=None,
        return_dict_in_generate=True,
    ).sequences
    assert len(drawn) == 2  # one starting canvas per block
    starts = {5: drawn[0], 5 + CANVAS: drawn[1]}
    adapter = DiffusionGemmaAdapter(model, noise=lambda b, n, start: starts[start])
    ours = hl.generate(
        adapter,
        ids,
        gen_length=2 * CANVAS,
        block_length=CANVAS,
        method="reference",
        method_options={"steps_per_block": 1},
    )
    assert torch.equal(ours.sequences, theirs)
    assert ours.stats.forward_passes == 2


def test_self_conditioning_feeds_the_previous_step_logits():
    model, ids = tiny_gemma(1), prompt(1)
    noise = torch.randint(0, VOCAB, (1, CANVAS), generator=torch.Generator().manual_seed(5))
    adapter = DiffusionGemmaAdapter(model, noise=lambda b, n, start: noise)
    canvas = torch.cat([ids, torch.full((1, CANVAS), adapter.mask_id)], dim=1)
    with torch.inference_mode():
        adapter.begin_block(canvas, 5, 5 + CANVAS)
        first = adapter.block_forward(canvas, 5, 5 + CANVAS)
        second = adapter.block_forward(canvas, 5, 5 + CANVAS)
        cache = transformers.DynamicCache(config=model.config.get_text_config(decoder=True))
        model.model.encoder(input_ids=ids, cache=cache, position_ids=torch.arange(5)[None])
        expected = model(
            decoder_input_ids=noise,
            cache=cache,
            self_conditioning_logits=first.to(torch.float64),
            decoder_position_ids=torch.arange(5, 5 + CANVAS)[None],
        ).logits
    assert torch.equal(second, expected)
    assert not torch.equal(first, second)  # self-conditioning changes the prediction


def test_prefix_cache_reuse_equals_fresh_encoding():
    model, ids = tiny_gemma(2), prompt(2)
    noise = torch.randint(0, VOCAB, (1, CANVAS), generator=torch.Generator().manual_seed(6))
    finished = torch.randint(0, VOCAB, (1, CANVAS), generator=torch.Generator().manual_seed(7))
    canvas = torch.cat([ids, finished, torch.full((1, CANVAS), VOCAB)], dim=1)
    with torch.inference_mode():
        warm = DiffusionGemmaAdapter(model, noise=lambda b, n, start: noise)
        warm.begin_block(canvas[:, : 5 + CANVAS], 5, 5 + CANVAS)  # encodes the prompt only
        warm.begin_block(canvas, 5 + CANVAS, 5 + 2 * CANVAS)  # adds the finished block
        fresh = DiffusionGemmaAdapter(model, noise=lambda b, n, start: noise)
        fresh.begin_block(canvas, 5 + CANVAS, 5 + 2 * CANVAS)
        a = warm.block_forward(canvas, 5 + CANVAS, 5 + 2 * CANVAS)
        b = fresh.block_forward(canvas, 5 + CANVAS, 5 + 2 * CANVAS)
        # a different prompt of the same length is re-encoded, not served from the stale cache
        other = canvas.clone()
        other[:, 0] = (other[:, 0] + 1) % VOCAB
        warm.begin_block(other, 5 + CANVAS, 5 + 2 * CANVAS)
        c = warm.block_forward(other, 5 + CANVAS, 5 + 2 * CANVAS)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def options_for(name: str) -> dict:
    return {"guide": tiny_guide(seed=3, vocab=VOCAB)} if name == "ar_guided" else {}


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("example_")])
def test_every_method_runs_on_diffusion_gemma(name):
    model = tiny_gemma(0)
    ids = prompt(0, rows=2)
    out = hl.generate(model, ids, gen_length=16, block_length=CANVAS, method=name, method_options=options_for(name))
    gen = out.sequences[:, 5:]
    assert gen.shape == (2, 16)
    assert bool(((gen >= 0) & (gen < VOCAB)).all())  # no sentinel left, every token real
    assert out.stats.forward_passes >= 2  # at least one step per block


@pytest.mark.parametrize("seed", range(3))
def test_lossless_controls_hold_on_diffusion_gemma(seed):
    """Same steps, same per-block noise: threshold 1.0 is the reference; radius 0 is fast_dllm."""
    model, ids = tiny_gemma(seed), prompt(seed)
    kw = {"gen_length": 16, "block_length": CANVAS}
    ref = hl.generate(model, ids, method="reference", **kw)
    fast1 = hl.generate(model, ids, method="fast_dllm", method_options={"threshold": 1.0, "cache": "none"}, **kw)
    assert torch.equal(ref.sequences, fast1.sequences)
    fast = hl.generate(model, ids, method="fast_dllm", method_options={"threshold": 0.02, "cache": "dual"}, **kw)
    leap = hl.generate(
        model,
        ids,
        method="local_leap",
        method_options={"anchor_threshold": 0.02, "relaxed_threshold": 0.01, "radius": 0},
        **kw,
    )
    assert torch.equal(fast.sequences, leap.sequences)
    assert fast.stats.forward_passes == leap.stats.forward_passes < ref.stats.forward_passes  # parallel commits


def test_registered_adapter_and_bad_input():
    model = tiny_gemma(0, context=24)
    adapter = as_adapter(model)
    with pytest.raises(TypeError, match="block_forward"):
        adapter.forward(prompt(0), torch.arange(5))
    assert isinstance(adapter, DiffusionGemmaAdapter)
    assert adapter.mask_id == VOCAB and adapter.max_length == 24
    with pytest.raises(ValueError, match="context"):
        hl.generate(model, prompt(0, length=12), gen_length=16, block_length=CANVAS)
    with pytest.raises(ValueError, match="multiple"):
        hl.generate(model, prompt(0), gen_length=12, block_length=CANVAS)
    with pytest.raises(ValueError, match="0..63"):
        hl.generate(model, torch.tensor([[3, VOCAB]]), gen_length=8, block_length=CANVAS)
    with pytest.raises(TypeError, match="DiffusionGemma"):
        DiffusionGemmaAdapter(torch.nn.Linear(2, 2))
