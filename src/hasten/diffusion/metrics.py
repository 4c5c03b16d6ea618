"""Fidelity metrics: relative L1 (residual diff), PSNR, SSIM.

Dims: B batch, C channels, H height, W width. Images are float tensors in
``[0, data_range]``; the result is per sample so a batch of prompts is never averaged
into one number.

* relative L1 (a.k.a. residual diff): ``sum|candidate - reference| / sum|reference|``,
  a fraction (0 = identical); what First Block Cache and TeaCache threshold.
* PSNR: ``10 log10(data_range^2 / MSE)`` in dB; ``inf`` for identical images.
* SSIM: "Image Quality Assessment: From Error Visibility to Structural Similarity"
  (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004), with the paper's 11x11 Gaussian window
  (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over channels and valid window positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def relative_l1(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """Per-sample relative L1 distance.

    Args:
        reference: (B, ...) float, the trusted value (denominator).
        candidate: (B, ...) float, same shape.

    Returns:
        (B,) float32: ``sum|candidate - reference| / sum|reference|`` over all non-batch
        elements; 0 where both are zero, ``inf`` where only the reference is zero.

    Raises:
        ValueError: shapes differ.

    Example: reference ``[[1., -1.]]``, candidate ``[[1.5, -1.]]`` gives ``[0.25]``.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    ref = reference.detach().float().reshape(reference.shape[0], -1)
    cand = candidate.detach().float().reshape(candidate.shape[0], -1)
    return _ratio((cand - ref).abs().sum(dim=1), ref.abs().sum(dim=1))


def feature_relative_l1(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]) -> float:
    """Relative L1 between two features (tuples of (B, ...) tensors), worst sample of the batch.

    Sums ``|candidate - reference|`` and ``|reference|`` over every tensor of the feature
    per sample, divides, and returns the maximum over the batch: a batch (several prompts,
    or the two halves of a batched CFG call) may only share a cached step if every sample
    in it could. The maximum does not depend on the order of samples in the batch.

    Raises:
        ValueError: the features differ in length, shapes or batch size.
    """
    if len(reference) != len(candidate) or not reference:
        raise ValueError("features must be non-empty and of equal length")
    numerator, denominator = 0.0, 0.0
    for ref, cand in zip(reference, candidate):
        if ref.shape != cand.shape:
            raise ValueError(f"shape mismatch: {tuple(ref.shape)} vs {tuple(cand.shape)}")
        ref32 = ref.detach().float().reshape(ref.shape[0], -1)
        numerator = numerator + (cand.detach().float().reshape(cand.shape[0], -1) - ref32).abs().sum(dim=1)
        denominator = denominator + ref32.abs().sum(dim=1)
    return float(_ratio(numerator, denominator).max())


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    ratio = numerator / safe
    ratio = torch.where((denominator == 0) & (numerator > 0), torch.full_like(ratio, math.inf), ratio)
    return torch.where((denominator == 0) & (numerator == 0), torch.zeros_like(ratio), ratio)


def psnr(reference: torch.Tensor, candidate: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per sample.

    Args:
        reference, candidate: (B, ...) float images in ``[0, data_range]``.
        data_range: the value span (1.0 for ``[0, 1]`` images, 255 for uint8 scale).

    Returns:
        (B,) float64 in dB; ``inf`` where the images are identical.

    Raises:
        ValueError: shapes differ or ``data_range <= 0``.

    Example: zeros vs all-0.1 with ``data_range=1`` has MSE 0.01, so PSNR = 20 dB.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    diff = candidate.detach().double() - reference.detach().double()
    mse = diff.reshape(diff.shape[0], -1).pow(2).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(reference: torch.Tensor, candidate: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per sample.

    Args:
        reference, candidate: (B, C, H, W) float images in ``[0, data_range]``; H, W >= 11.
        data_range: the value span (1.0 for ``[0, 1]`` images).

    Returns:
        (B,) float64 in ``[-1, 1]``; 1 for identical images. The SSIM map is computed at
        valid window positions only (no padding) and averaged over them and channels.

    Raises:
        ValueError: shapes differ, are not 4-D, are smaller than the window, or
            ``data_range <= 0``.
    """
    if reference.shape != candidate.shape or reference.dim() != 4:
        raise ValueError(f"need equal (B, C, H, W) shapes, got {tuple(reference.shape)} and {tuple(candidate.shape)}")
    if min(reference.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"images must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(reference.shape[-2:])}")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    x, y = reference.detach().double(), candidate.detach().double()
    channels = x.shape[1]
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(x.device).expand(channels, 1, -1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)
