"""taylorseer: contract suite, schedule, and exact forecasts of linear features."""

import pytest
import torch

import hasten.diffusion as hd

from .contract import CacheContract
from .toys import TOY_SPEC, EvaluationCounter, LinearInTimeDenoiser, euler, inputs, make_toy


class TestTaylorSeerContract(CacheContract):
    exact_config = hd.TaylorSeerConfig(interval=1)
    active_config = hd.TaylorSeerConfig(interval=3, order=2, warmup_steps=3)


def test_full_steps_follow_interval_and_warmup():
    model = make_toy(depth=3)
    noise, cond, _ = inputs()
    counter = EvaluationCounter(list(model.blocks), "mlp.0")
    handle = hd.enable(model, hd.TaylorSeerConfig(interval=4, order=2, warmup_steps=2), TOY_SPEC)
    euler(model, noise, cond, 10)
    full = {0, 1, 2, 6}
    assert [c.forecast for c in handle.summary().per_step] == [0 if s in full else 3 for s in range(10)]
    assert counter.counts == [4, 4, 4]


@pytest.mark.parametrize("order", [1, 2])
def test_forecasting_features_linear_in_the_step_is_exact(order):
    torch.manual_seed(0)
    model = LinearInTimeDenoiser(depth=3)
    noise, cond, _ = inputs()
    reference = euler(model, noise, cond, 12)
    handle = hd.enable(model, hd.TaylorSeerConfig(interval=3, order=order, warmup_steps=2), TOY_SPEC)
    out = euler(model, noise, cond, 12)
    assert handle.summary().totals.forecast == 6 * 3  # full at 0, 1, 2, 5, 8, 11
    torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-10)


def test_order_zero_reuse_is_not_exact_on_linear_features():
    torch.manual_seed(0)
    model = LinearInTimeDenoiser(depth=3)
    noise, cond, _ = inputs()
    reference = euler(model, noise, cond, 12)
    hd.enable(model, hd.TaylorSeerConfig(interval=3, order=0, warmup_steps=2), TOY_SPEC)
    assert not torch.allclose(euler(model, noise, cond, 12), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"order": 3}, {"order": -1}, {"warmup_steps": -1}])
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        hd.TaylorSeerConfig(**kwargs)
