"""cg_taylor (confidence-gated last-block forecasting): contract suite, gate, and exact forecasts."""

import math

import pytest
import torch

import hasten.diffusion as hd

from .contract import CacheContract
from .toys import TOY_SPEC, EvaluationCounter, LinearInTimeDenoiser, euler, inputs, make_toy


class TestCGTaylorContract(CacheContract):
    exact_config = hd.CGTaylorConfig(threshold=0.0)
    active_config = hd.CGTaylorConfig(threshold=0.5, order=1, warmup_steps=3)


def test_accurate_first_block_forecast_bypasses_the_middle_and_forecasts_the_last_block():
    torch.manual_seed(0)
    model = LinearInTimeDenoiser(depth=4)
    noise, cond, _ = inputs()
    reference = euler(model, noise, cond, 10)
    counter = EvaluationCounter(list(model.blocks), "probe")
    handle = hd.enable(model, hd.CGTaylorConfig(threshold=1e-9, order=1, warmup_steps=2), TOY_SPEC)
    out = euler(model, noise, cond, 10)
    summary = handle.summary()
    assert counter.counts == [10, 2, 2, 2]  # block 0 every step; the rest only in warm-up
    assert [(c.computed, c.bypassed, c.forecast) for c in summary.per_step[2:]] == [(1, 2, 1)] * 8
    torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-10)


def test_forecast_streak_is_capped():
    torch.manual_seed(0)
    model = LinearInTimeDenoiser(depth=4)
    noise, cond, _ = inputs()
    config = hd.CGTaylorConfig(threshold=math.inf, order=1, warmup_steps=2, max_consecutive_forecasts=2)
    handle = hd.enable(model, config, TOY_SPEC)
    euler(model, noise, cond, 10)
    full = {0, 1, 4, 7}
    assert [c.forecast for c in handle.summary().per_step] == [0 if s in full else 1 for s in range(10)]


def test_threshold_zero_measures_the_first_block_forecast_error():
    model = make_toy(depth=3)
    noise, cond, _ = inputs(batch=2)
    outputs = []
    hook = model.blocks[0].register_forward_hook(lambda m, args, out: outputs.append(out))
    handle = hd.enable(model, hd.CGTaylorConfig(threshold=0.0, order=0), TOY_SPEC)
    euler(model, noise, cond, 6)
    hook.remove()
    # Order 0 and a full step every time: the forecast for step s is the output of step s - 1,
    # and the error is relative to the actual output.
    expected = [
        ((prev - cur).abs().sum(dim=(1, 2)) / cur.abs().sum(dim=(1, 2))).max().item()
        for prev, cur in zip(outputs, outputs[1:])
    ]
    assert handle.summary().residual_diffs == pytest.approx(expected, rel=1e-6)
    assert handle.summary().totals.skipped == 0


def test_needs_two_blocks():
    spec = hd.DenoiserSpec((hd.BlockGroup("blocks.0"),))
    with pytest.raises(ValueError, match="at least 2 blocks"):
        hd.enable(make_toy(), hd.CGTaylorConfig(), spec)


@pytest.mark.parametrize(
    "kwargs", [{"threshold": -1.0}, {"order": 3}, {"warmup_steps": -1}, {"max_consecutive_forecasts": 0}]
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        hd.CGTaylorConfig(**kwargs)
