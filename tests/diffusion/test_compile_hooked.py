"""torch.compile of a hooked denoiser (issue 22): every policy gives the eager cache's output;
first_block, which dynamo cannot trace, falls back to eager decisions with a warning."""

import warnings

import pytest
import torch

import hasten.diffusion as hd
from hasten.compile import CompileFallbackWarning

from .toys import TOY_SPEC, euler, inputs, make_toy

CONFIGS = [
    (hd.FirstBlockCacheConfig(threshold=0.5, warmup_steps=2), True),
    (hd.TaylorSeerConfig(interval=3, order=2, warmup_steps=3), False),
    (hd.StaticCacheConfig(interval=3, warmup_steps=2), False),
    (hd.DeltaDiTConfig(interval=2, switch_step=8, cached_fraction=0.5), False),
    (hd.CGTaylorConfig(threshold=0.5, order=1, warmup_steps=3), False),
]


@pytest.mark.parametrize("config, falls_back", CONFIGS, ids=lambda c: type(c).__name__)
def test_compiled_hooked_denoiser_matches_eager_cache(config, falls_back):
    noise, cond, _ = inputs()
    model = make_toy(depth=4)
    hd.enable(model, config, TOY_SPEC)
    eager = euler(model, noise, cond, 12)
    hd.disable(model)
    handle = hd.enable(model, config, TOY_SPEC)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = euler(torch.compile(model, backend="eager"), noise, cond, 12)
    torch._dynamo.reset()
    hd.disable(model)
    assert torch.allclose(compiled, eager, rtol=0, atol=1e-12)
    assert handle.summary().per_step[-1].computed < 4 or not falls_back  # it did reuse under compile
    fallbacks = [w for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert bool(fallbacks) == falls_back
