"""copy.deepcopy of a hooked denoiser gives an independent cache that disable() removes (issue 22)."""

import copy

import pytest
import torch

import hasten.diffusion as hd

from .toys import TOY_SPEC, euler, inputs, make_toy

CONFIGS = [
    hd.FirstBlockCacheConfig(threshold=0.5, warmup_steps=2),
    hd.TaylorSeerConfig(interval=3, order=2),
    hd.StaticCacheConfig(interval=3, warmup_steps=2),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_deepcopy_of_hooked_denoiser_is_independent_and_disable_restores_it(config):
    noise, cond, _ = inputs()
    plain = euler(make_toy(depth=4), noise, cond, 8)
    model = make_toy(depth=4)
    handle = hd.enable(model, config, TOY_SPEC)
    cached = euler(model, noise, cond, 8)
    assert not torch.equal(cached, plain)  # the cache reused something: a copy must behave the same

    clone = copy.deepcopy(model)
    clone_handle = hd.handle_of(clone)
    assert clone_handle is not None and clone_handle is not handle and clone_handle.module is clone
    assert torch.equal(euler(clone, noise, cond, 8), cached)  # hooked copy: same cached output
    before = handle.summary()

    hd.disable(clone)
    for module in (clone, *clone.blocks):
        assert "forward" not in vars(module)  # the class's own forward again, no leftover placeholder
    assert torch.equal(euler(clone, noise, cond, 8), plain)
    assert hd.handle_of(model) is handle and handle.summary() == before  # the original is untouched
    assert torch.equal(euler(model, noise, cond, 8), cached)
    hd.disable(model)
    assert torch.equal(euler(model, noise, cond, 8), plain)
