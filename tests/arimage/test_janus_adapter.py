"""The samplers on transformers' own Janus image generation (tiny random config, float64):
the adapter's cached logits equal one cache-free forward written out here; a Jacobi window
of 1 is the reference sampler; CFG row order does not matter; sjd runs and is seeded."""

from __future__ import annotations

import pytest
import torch

import hasten.arimage as ha

pytest.importorskip("transformers")

from hasten.arimage.janus import tiny_janus  # noqa: E402

SAMPLING = dict(cfg_scale=3.0, top_k=8)


@pytest.fixture(scope="module")
def model():
    return tiny_janus(seed=0)


def test_cached_logits_equal_one_full_forward(model):
    """Prompt + 5 image tokens: prefill then two cached steps vs Janus's modules run once."""
    torch.manual_seed(1)
    image = torch.randint(0, model.vocab_size, (2, 5))
    class_ids = torch.tensor([1, model.null_class])
    cache = model.new_cache()
    first = model.forward(torch.cat([torch.zeros(2, 1, dtype=torch.long), image[:, :2]], dim=1), class_ids, cache)
    rest = model.forward(image[:, 2:], class_ids, cache)
    cached = torch.cat([first, rest], dim=1)  # (2, 6, V)
    janus = model.model
    null = model.prompts[1].clone()
    null[1:-1] = 1  # pad everything but BOS and BOI, by hand
    prompts = torch.stack([model.prompts[1], null])
    embeds = torch.cat(
        [janus.get_input_embeddings()(prompts), janus.prepare_embeddings_for_image_generation(image)], dim=1
    )
    hidden = janus.model.language_model(inputs_embeds=embeds).last_hidden_state
    full = janus.model.generation_head(hidden[:, prompts.shape[1] - 1 :])
    assert cached.shape == (2, 6, model.vocab_size)
    torch.testing.assert_close(cached, full, rtol=1e-10, atol=1e-10)
    # negative control: the unconditional row really differs from the conditional one
    assert not torch.allclose(full[0], full[1])


def test_window_one_is_the_reference_sampler(model):
    labels = [0, 1, 2, 1]
    _, ref = ha.generate(model, labels, "reference", seed=3, **SAMPLING)
    _, sjd = ha.generate(model, labels, "sjd", seed=3, window=1, **SAMPLING)
    assert torch.equal(ref.tokens, sjd.tokens)
    _, other = ha.generate(model, labels, "reference", seed=4, **SAMPLING)
    assert not torch.equal(ref.tokens, other.tokens)


def test_cfg_row_order_does_not_matter(model):
    _, a = ha.generate(model, [2, 0], "sjd", seed=5, window=6, **SAMPLING)
    _, b = ha.generate(model, [2, 0], "sjd", seed=5, window=6, cfg_roles=("uncond", "cond"), **SAMPLING)
    assert torch.equal(a.tokens, b.tokens)


def test_sjd_runs_with_fewer_forwards(model):
    images, stats = ha.generate(model, [0, 1, 2], "sjd", seed=6, window=8, init="spatial", **SAMPLING)
    assert images.shape == (3, 3, 8, 8) and float(images.abs().max()) <= 1
    assert stats.tokens.shape == (3, model.seq_len)
    assert int(stats.tokens.min()) >= 0 and int(stats.tokens.max()) < model.vocab_size
    assert stats.forwards_per_image < model.seq_len  # drafts were accepted


def test_bad_prompts_are_refused(model):
    from hasten.arimage.janus import JanusAdapter

    with pytest.raises(ValueError, match="BOI"):
        JanusAdapter(model.model, torch.tensor([[0, 5, 6, 7]]), bos_id=0, boi_id=2, pad_id=1)
