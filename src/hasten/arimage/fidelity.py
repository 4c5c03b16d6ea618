"""Fidelity of generated digits: classifier accuracy, a Fréchet distance on classifier
features (FID-like) with its noise floor, and per-position token distribution tests.

* ``accuracy``: share of images the digits DiT's judge
  (:class:`hasten.diffusion.models.digits.DigitClassifier`, an RBF SVC fit on the real
  digits) assigns to the class they were generated for.
* ``fid``: Fréchet distance ("GANs Trained by a Two Time-Scale Update Rule Converge to a
  Local Nash Equilibrium", Heusel et al., arXiv 1706.08500) between Gaussians fit to the
  64 hidden features of a small MLP classifier (:class:`FeatureNet`, fit on the real
  digits in a few seconds) of two image sets. Its *noise floor* is the distance between
  reference-sampler sets drawn with different seeds: a method whose distance to the
  reference stays within it is indistinguishable from the reference at this sample size.
* :func:`token_tests`: per token position, a chi-square test of homogeneity between the
  token histograms of two sets (same labels, independent seeds).

Dims: B images, F = 64 features, L token positions, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["FeatureNet", "frechet_distance", "token_tests", "Judge"]


@dataclass
class FeatureNet:
    """A one-hidden-layer MLP classifier (scikit-learn) on the real 8x8 digits; its ReLU
    hidden layer is the feature space of :func:`frechet_distance`."""

    model: Any

    @classmethod
    def fit(cls, seed: int = 0) -> FeatureNet:
        from sklearn.neural_network import MLPClassifier

        from ..diffusion.models.digits import digits_dataset, to_8x8

        images, labels = digits_dataset()
        net = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=seed)
        return cls(net.fit(to_8x8(images), labels.numpy()))

    def features(self, images: torch.Tensor) -> np.ndarray:
        """(B, 1, 16, 16) float in [-1, 1] -> (B, 64) float64 hidden activations."""
        from ..diffusion.models.digits import to_8x8

        hidden = to_8x8(images) @ self.model.coefs_[0] + self.model.intercepts_[0]
        return np.maximum(hidden, 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fit to two feature sets.

    Args:
        a, b: (B, F) float features (B >= 2 each).

    Returns:
        ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) >= 0.

    Example: two identical sets -> 0.
    """
    from scipy.linalg import sqrtm

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(max(0.0, ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)))


def token_tests(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-position chi-square tests of homogeneity of two token sets.

    Args:
        a, b: (B, L) int token sets.

    Returns:
        (L,) float p-values (1.0 where both sets hold a single identical token).
    """
    from scipy.stats import chi2_contingency

    values = []
    for pos in range(a.shape[1]):
        vocab = int(max(a[:, pos].max(), b[:, pos].max())) + 1
        table = np.stack([np.bincount(a[:, pos], minlength=vocab), np.bincount(b[:, pos], minlength=vocab)])
        table = table[:, table.sum(0) > 0]
        values.append(1.0 if table.shape[1] < 2 else float(chi2_contingency(table).pvalue))
    return np.array(values)


class Judge:
    """Both judges, fit once per bench run."""

    def __init__(self) -> None:
        from ..diffusion.models.digits import DigitClassifier

        self.classifier = DigitClassifier.fit()
        self.features = FeatureNet.fit()

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        return self.classifier.accuracy(images.float(), labels)[0]

    def fid(self, images: torch.Tensor, other: torch.Tensor) -> float:
        return frechet_distance(self.features.features(images.float()), self.features.features(other.float()))
