"""static (FORA): contract suite plus its refresh schedule."""

import pytest
import torch

import hasten.diffusion as hd

from .contract import CacheContract
from .toys import TOY_SPEC, EvaluationCounter, euler, inputs, make_toy


class TestStaticContract(CacheContract):
    exact_config = hd.StaticCacheConfig(interval=1, warmup_steps=0)
    active_config = hd.StaticCacheConfig(interval=3, warmup_steps=2)


def test_refresh_schedule_follows_interval_and_warmup():
    model = make_toy(depth=4)
    noise, cond, _ = inputs()
    counter = EvaluationCounter(list(model.blocks), "mlp.0")
    handle = hd.enable(model, hd.StaticCacheConfig(interval=3, warmup_steps=2), TOY_SPEC)
    euler(model, noise, cond, 10)
    refresh_steps = {0, 1, 2, 5, 8}  # warm-up 0-1, then every third step from step 2
    summary = handle.summary()
    assert [c.computed for c in summary.per_step] == [4 if s in refresh_steps else 0 for s in range(10)]
    assert [c.reused for c in summary.per_step] == [0 if s in refresh_steps else 4 for s in range(10)]
    assert counter.counts == [5, 5, 5, 5]


class ConstantResidualDenoiser(torch.nn.Module):
    """Blocks add a fixed vector: h -> h + w_i. Their residual never changes, so reusing it is exact."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(4, 6, dtype=torch.float64)
        self.blocks = torch.nn.ModuleList(_AddBlock() for _ in range(3))

    def forward(self, hidden_states, timestep, cond=None):
        h = self.embed(hidden_states.flatten(2).transpose(1, 2))
        for block in self.blocks:
            h = block(h)
        return h[..., :4].transpose(1, 2).reshape(hidden_states.shape)


class _AddBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6, dtype=torch.float64))

    def forward(self, hidden_states):
        return hidden_states + self.w


def test_reusing_a_constant_residual_is_exact():
    torch.manual_seed(0)
    model = ConstantResidualDenoiser()
    noise, cond, _ = inputs()
    reference = euler(model, noise, cond, 12)
    handle = hd.enable(model, hd.StaticCacheConfig(interval=4, warmup_steps=0), TOY_SPEC)
    out = euler(model, noise, cond, 12)
    assert handle.summary().totals.reused == 9 * 3
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"warmup_steps": -1}])
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        hd.StaticCacheConfig(**kwargs)
