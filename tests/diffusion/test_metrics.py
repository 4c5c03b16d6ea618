"""Fidelity metrics against hand-worked values and an independent SSIM built on scipy."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from hasten.diffusion.metrics import feature_relative_l1, psnr, relative_l1, ssim


def test_relative_l1_worked_example_and_edge_cases():
    assert relative_l1(torch.tensor([[1.0, -1.0]]), torch.tensor([[1.5, -1.0]])).tolist() == [0.25]
    zeros = torch.zeros(1, 2)
    assert relative_l1(zeros, zeros).tolist() == [0.0]
    assert relative_l1(zeros, torch.ones(1, 2)).tolist() == [math.inf]
    with pytest.raises(ValueError):
        relative_l1(zeros, torch.zeros(1, 3))


def test_feature_relative_l1_is_the_worst_sample_and_order_free():
    ref = (torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.tensor([[1.0], [0.0]]))
    cand = (torch.tensor([[1.0, 1.0], [2.0, 3.0]]), torch.tensor([[2.0], [0.0]]))
    # sample 0: |0| + |1| over 2 + 1 = 1/3; sample 1: 1 over 4 = 1/4
    assert feature_relative_l1(ref, cand) == pytest.approx(1 / 3)
    flip = lambda f: tuple(t.flip(0) for t in f)  # noqa: E731
    assert feature_relative_l1(flip(ref), flip(cand)) == feature_relative_l1(ref, cand)
    with pytest.raises(ValueError):
        feature_relative_l1(ref, cand[:1])


def test_psnr_worked_example():
    ref = torch.zeros(2, 3, 4, 4)
    cand = torch.full_like(ref, 0.1)
    assert psnr(ref, cand).tolist() == pytest.approx([20.0, 20.0])  # MSE 0.01
    assert psnr(ref * 255, cand * 255, data_range=255).tolist() == pytest.approx([20.0, 20.0])
    assert psnr(ref, ref).tolist() == [math.inf, math.inf]
    with pytest.raises(ValueError):
        psnr(ref, cand, data_range=0)


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 SSIM of one (H, W) channel with scipy's Gaussian filter (sigma 1.5, radius 5)."""
    blur = lambda a: gaussian_filter(a, sigma=1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_ssim_matches_an_independent_implementation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 20, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = [np.mean([reference_ssim(x[b, c].numpy(), y[b, c].numpy()) for c in range(3)]) for b in range(2)]
    assert ssim(x, y).tolist() == pytest.approx(expected, rel=1e-9)


def test_ssim_properties_and_errors():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 16, 16, generator=g)
    assert ssim(x, x).item() == pytest.approx(1.0)
    noisy = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.05, 0.2, 0.5)]
    scores = [ssim(x, n).item() for n in noisy]
    assert scores == sorted(scores, reverse=True) and scores[0] < 1
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 16, 16), torch.zeros(1, 16, 16))
