"""delta_dit (Δ-DiT): contract suite plus which blocks are cached before and after the switch step."""

import pytest

import hasten.diffusion as hd

from .contract import CacheContract
from .toys import TOY_SPEC, EvaluationCounter, euler, inputs, make_toy


class TestDeltaDiTContract(CacheContract):
    exact_config = hd.DeltaDiTConfig(interval=1)
    active_config = hd.DeltaDiTConfig(interval=2, switch_step=8, cached_fraction=0.5)


def test_rear_blocks_cached_early_front_blocks_late():
    model = make_toy(depth=8)
    noise, cond, _ = inputs()
    counter = EvaluationCounter(list(model.blocks), "mlp.0")
    handle = hd.enable(model, hd.DeltaDiTConfig(interval=2, switch_step=4, cached_fraction=0.25), TOY_SPEC)
    euler(model, noise, cond, 8)
    # k = floor(0.25 * 8) = 2. Odd steps are not refreshes: 1 and 3 skip blocks 6-7, 5 and 7 skip blocks 0-1.
    assert counter.counts == [6, 6, 8, 8, 8, 8, 6, 6]
    assert [c.reused for c in handle.summary().per_step] == [0, 2, 0, 2, 0, 2, 0, 2]


def test_at_least_one_block_is_cached():
    model = make_toy(depth=4)
    noise, cond, _ = inputs()
    handle = hd.enable(model, hd.DeltaDiTConfig(interval=2, switch_step=0, cached_fraction=0.1), TOY_SPEC)
    euler(model, noise, cond, 4)
    assert [c.reused for c in handle.summary().per_block] == [2, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs", [{"interval": 0}, {"switch_step": -1}, {"cached_fraction": 0.0}, {"cached_fraction": 1.5}]
)
def test_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        hd.DeltaDiTConfig(**kwargs)
