"""Taylor factors and forecasts (TaylorSeer, arXiv 2503.06923) on hand-worked examples."""

import pytest
import torch

from hasten.diffusion.forecast import TaylorTrack, taylor_forecast, taylor_update


def f(*values):
    """A one-tensor feature holding ``values``."""
    return (torch.tensor(values, dtype=torch.float64),)


def test_first_order_worked_example():
    factors = taylor_update((f(2.0),), f(5.0), distance=3, max_order=1)
    assert [x[0].tolist() for x in factors] == [[5.0], [1.0]]  # derivative (5 - 2) / 3
    assert taylor_forecast(factors, 2)[0].tolist() == [7.0]  # 5 + 1 * 2


def test_order_zero_is_plain_reuse():
    factors = taylor_update((f(2.0),), f(5.0), distance=3, max_order=0)
    assert len(factors) == 1
    assert taylor_forecast(factors, 4)[0].tolist() == [5.0]


def test_linear_sequences_are_forecast_exactly():
    track = TaylorTrack(max_order=2)
    for step in (0, 1, 2, 6):  # uneven spacing like warm-up then interval 4
        track.update(f(3.0 * step - 1.0, -step), step)
    for step in range(7, 12):
        assert track.forecast(step)[0].tolist() == pytest.approx([3.0 * step - 1.0, -step])


def test_second_order_uses_backward_differences():
    # F(s) = s^2 at s = 0, 1, 2: factors (4, 3, 2); forecast at s = 3 is 4 + 3 + 2 / 2 = 8
    # (the truncation error of backward differences; the true value is 9).
    track = TaylorTrack(max_order=2)
    for step in (0, 1, 2):
        track.update(f(float(step**2)), step)
    assert [x[0].item() for x in track.factors] == [4.0, 3.0, 2.0]
    assert track.forecast(3)[0].item() == 8.0


def test_factor_count_grows_with_updates_up_to_the_order():
    track = TaylorTrack(max_order=2)
    assert track.forecast(0) is None
    for step, expected in zip(range(4), (1, 2, 3, 3)):
        track.update(f(1.0), step)
        assert len(track.factors) == expected


def test_updating_at_an_earlier_step_starts_over():
    track = TaylorTrack(max_order=2)
    track.update(f(1.0), 5)
    track.update(f(2.0), 6)
    track.update(f(7.0), 0)
    assert len(track.factors) == 1 and track.step == 0


def test_errors():
    with pytest.raises(ValueError):
        taylor_forecast((), 1)
    with pytest.raises(ValueError):
        taylor_update((f(1.0),), f(2.0), distance=0, max_order=1)
    with pytest.raises(ValueError):
        taylor_update((), f(2.0), distance=1, max_order=-1)
