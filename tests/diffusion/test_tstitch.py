"""T-Stitch: schedule arithmetic, and stitched sampling against a hand-written reference loop."""

from __future__ import annotations

import math

import pytest
import torch

from hasten.diffusion.tstitch import TStitchConfig, denoiser_at

pytest.importorskip("diffusers")

from hasten.diffusion.models.digits import ARCHITECTURES, NULL_CLASS, build_dit, sample  # noqa: E402

STEPS = 6
LABELS = torch.tensor([3, 7, 0])


@pytest.mark.parametrize("fraction", [-0.1, 1.5, math.nan, math.inf])
def test_config_rejects_fractions_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match="fraction"):
        TStitchConfig(fraction)


@pytest.mark.parametrize(
    ("fraction", "steps", "expected"),
    [(0.0, 10, 0), (1.0, 10, 10), (0.4, 10, 4), (0.25, 10, 3), (0.5, 3, 2), (0.49, 3, 1), (1.0, 1, 1)],
)
def test_small_steps_rounds_half_up(fraction, steps, expected):
    assert TStitchConfig(fraction).small_steps(steps) == expected


def test_denoiser_at_switches_after_the_small_steps():
    chosen = [denoiser_at(i, 10, TStitchConfig(0.4), "small", "large") for i in range(10)]
    assert chosen == ["small"] * 4 + ["large"] * 6
    with pytest.raises(ValueError):
        denoiser_at(10, 10, TStitchConfig(0.4), "small", "large")
    with pytest.raises(ValueError):
        TStitchConfig(0.5).small_steps(0)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    large = build_dit(ARCHITECTURES["tiny"]).double().eval()
    torch.manual_seed(1)
    small = build_dit(dict(ARCHITECTURES["tiny"], num_layers=1)).double().eval()
    return small, large


def test_fraction_zero_is_exactly_the_large_model(pair):
    small, large = pair
    plain = sample(large, LABELS, steps=STEPS, seed=5)
    stitched = sample(large, LABELS, steps=STEPS, seed=5, small_model=small, stitch=TStitchConfig(0.0))
    assert torch.equal(plain, stitched)


def test_fraction_one_is_exactly_the_small_model(pair):
    small, large = pair
    plain = sample(small, LABELS, steps=STEPS, seed=5)
    stitched = sample(large, LABELS, steps=STEPS, seed=5, small_model=small, stitch=TStitchConfig(1.0))
    assert torch.equal(plain, stitched)


def _reference_stitched(small, large, labels, steps, guidance, seed, small_steps):
    """Slow reference: cond and null-class calls made separately, models picked by hand."""
    x = torch.randn((labels.shape[0], 1, 16, 16), generator=torch.Generator().manual_seed(seed)).double()
    null = torch.full_like(labels, NULL_CLASS)
    for i in range(steps):
        model = small if i < small_steps else large
        t = 1 - i / steps
        timestep = torch.full((labels.shape[0],), 1000.0 * t, dtype=torch.float64)
        v_cond = model(x, timestep=timestep, class_labels=labels).sample
        v_null = model(x, timestep=timestep, class_labels=null).sample
        x = x + (-1 / steps) * (v_null + guidance * (v_cond - v_null))
    return x.float().clamp(-1, 1)


def test_stitched_sampling_matches_reference_loop(pair):
    small, large = pair
    got = sample(large, LABELS, steps=STEPS, guidance=2.5, seed=2, small_model=small, stitch=TStitchConfig(0.5))
    want = _reference_stitched(small, large, LABELS, STEPS, 2.5, 2, small_steps=3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.equal(got, sample(large, LABELS, steps=STEPS, guidance=2.5, seed=2))


def test_stitch_without_small_model_is_refused(pair):
    _, large = pair
    with pytest.raises(ValueError, match="small_model"):
        sample(large, LABELS, steps=STEPS, stitch=TStitchConfig(0.5))
