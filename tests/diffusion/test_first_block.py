"""first_block (adaptive probe caching): contract suite, decisions, and the measured residual diffs."""

import math

import pytest

import hasten.diffusion as hd

from .contract import CacheContract
from .toys import TOY_SPEC, EvaluationCounter, euler, inputs, make_toy


class TestFirstBlockContract(CacheContract):
    exact_config = hd.FirstBlockCacheConfig(threshold=0.0)
    active_config = hd.FirstBlockCacheConfig(threshold=0.5, warmup_steps=2)


def test_probe_and_tail_always_run_and_reuse_streak_is_capped():
    model = make_toy(depth=6)
    noise, cond, _ = inputs()
    counter = EvaluationCounter(list(model.blocks), "mlp.0")
    config = hd.FirstBlockCacheConfig(
        threshold=math.inf, probe_blocks=1, tail_blocks=1, warmup_steps=1, max_consecutive_reuses=2
    )
    handle = hd.enable(model, config, TOY_SPEC)
    euler(model, noise, cond, 10)
    # Step 0 has no reference; then two reuses, one refresh, repeating: refreshes at 0, 3, 6, 9.
    assert counter.counts == [10, 4, 4, 4, 4, 10]
    assert [c.reused for c in handle.summary().per_step] == [0, 4, 4, 0, 4, 4, 0, 4, 4, 0]


def test_threshold_zero_measures_step_to_step_first_block_residual_diffs():
    model = make_toy(depth=4)
    noise, cond, _ = inputs(batch=3)
    residuals = []
    hook = model.blocks[0].register_forward_hook(lambda m, args, out: residuals.append(out - args[0]))
    handle = hd.enable(model, hd.FirstBlockCacheConfig(threshold=0.0), TOY_SPEC)
    euler(model, noise, cond, 8)
    hook.remove()
    expected = []
    for previous, current in zip(residuals, residuals[1:]):
        per_sample = (current - previous).abs().sum(dim=(1, 2)) / previous.abs().sum(dim=(1, 2))
        expected.append(per_sample.max().item())
    measured = handle.summary().residual_diffs
    assert len(measured) == 7
    assert measured == pytest.approx(expected, rel=1e-6)
    pct = handle.summary().percentiles()
    assert set(pct) == {25, 50, 75, 95}
    assert min(expected) <= pct[25] <= pct[50] <= pct[75] <= pct[95] <= max(expected)


def test_larger_threshold_skips_more():
    noise, cond, _ = inputs()
    skipped = []
    for threshold in (0.0, 0.05, 0.3, 1.0):
        model = make_toy(depth=4)
        handle = hd.enable(model, hd.FirstBlockCacheConfig(threshold=threshold), TOY_SPEC)
        euler(model, noise, cond, 20)
        skipped.append(handle.summary().skipped_fraction)
    assert skipped[0] == 0.0
    assert skipped == sorted(skipped) and skipped[-1] > 0


def test_probe_plus_tail_must_leave_a_middle_block():
    with pytest.raises(ValueError, match="no middle"):
        hd.enable(make_toy(depth=4), hd.FirstBlockCacheConfig(probe_blocks=2, tail_blocks=2), TOY_SPEC)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": -0.1},
        {"threshold": math.nan},
        {"probe_blocks": 0},
        {"tail_blocks": -1},
        {"warmup_steps": -1},
        {"max_consecutive_reuses": 0},
    ],
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        hd.FirstBlockCacheConfig(**kwargs)
