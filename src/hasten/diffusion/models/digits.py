"""Class-conditional flow-matching DiTs on 16x16 handwritten digits, their sampler and a judge.

Models: diffusers' ``DiTTransformer2DModel`` (adaLN-zero conditioning on timestep and
class label; "Scalable Diffusion Models with Transformers", Peebles & Xie, arXiv
2212.09748), 1 channel, 16x16 pixels, patch 4 (16 tokens), class labels 0-9 plus the
*null class* 10 for classifier-free guidance (diffusers' label table has one extra row
when ``class_dropout_prob > 0``; training drops 10% of labels to it).

* ``"digits-dit"``: 6 blocks, width 192 (6 heads x 32), 4.6M parameters.
* ``"digits-dit-small"``: 4 blocks, width 96 (3 heads x 32), 0.83M parameters, the same
  data space and objective (the T-Stitch companion, :mod:`hasten.diffusion.tstitch`).

Objective: rectified flow / flow matching with a linear path ("Flow Straight and Fast",
Liu et al., arXiv 2209.03003; "Flow Matching for Generative Modeling", Lipman et al.,
arXiv 2210.02747): ``x_t = (1 - t) x_0 + t noise``, t in [0, 1], the model predicts the
velocity ``noise - x_0``. The denoiser's ``timestep`` argument is ``1000 t``.

Sampler: Euler from t = 1 (noise) to t = 0 (data) on a uniform grid, classifier-free
guidance ("Classifier-Free Diffusion Guidance", Ho & Salimans, arXiv 2207.12598) with the
conditional and null-class halves stacked in one denoiser call per step (so a cache hook
sees one call per step: one lane).

Data: scikit-learn's ``load_digits`` (UCI ML hand-written digits, 1797 images of 8x8,
values 0-16; licence CC BY 4.0), upsampled bilinearly to 16x16 and scaled to [-1, 1].

Dims: B batch (images), C = 1 channel, H = W = 16 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from hasten.diffusion.models import LoadedModel, load_tensors, read_manifest, register
from hasten.diffusion.tstitch import TStitchConfig, denoiser_at

__all__ = [
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "NULL_CLASS",
    "TIMESTEP_SCALE",
    "ARCHITECTURES",
    "DigitClassifier",
    "build_dit",
    "digits_dataset",
    "load_digits_dit",
    "sample",
    "to_8x8",
]

IMAGE_SIZE = 16
NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # diffusers' LabelEmbedding appends the CFG row after the classes
TIMESTEP_SCALE = 1000.0  # denoiser timestep = 1000 t
DATA_LICENSE = "UCI ML hand-written digits (scikit-learn load_digits), CC BY 4.0"

_COMMON = dict(in_channels=1, out_channels=1, sample_size=IMAGE_SIZE, patch_size=4, num_embeds_ada_norm=NUM_CLASSES)
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "large": dict(_COMMON, num_layers=6, num_attention_heads=6, attention_head_dim=32),
    "small": dict(_COMMON, num_layers=4, num_attention_heads=3, attention_head_dim=32),
    "tiny": dict(_COMMON, num_layers=3, num_attention_heads=2, attention_head_dim=8),  # tests only
}


def build_dit(config: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised ``DiTTransformer2DModel`` with constructor arguments ``config``.

    Raises:
        ImportError: diffusers is not installed (``pip install 'hasten[diffusion]'``).
    """
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(**config)


def digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1797 scikit-learn digits as model data.

    Returns:
        images: (1797, 1, 16, 16) float32 in [-1, 1] (bilinear 2x upsampling of 0-16 values).
        labels: (1797,) int64 digit classes 0-9.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32)).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (images * 2 - 1).clamp(-1, 1), torch.from_numpy(digits.target.astype(np.int64))


def to_8x8(images: torch.Tensor) -> np.ndarray:
    """Images back to the dataset's 8x8 grid, flattened for a classifier.

    Args:
        images: (B, 1, 16, 16) float in [-1, 1].

    Returns:
        (B, 64) float64, 2x2 average pooling, values in [0, 1] (the dataset's 0-16 / 16).
    """
    pooled = F.avg_pool2d(images.detach().float().clamp(-1, 1), 2)
    return ((pooled + 1) / 2).reshape(images.shape[0], -1).double().numpy()


# ----- sampling -----


def guided_velocity(
    model: torch.nn.Module, x: torch.Tensor, t: float, class_labels: torch.Tensor, guidance: float
) -> torch.Tensor:
    """Classifier-free-guided velocity at time ``t`` from one batched denoiser call.

    Args:
        model: a digits DiT.
        x: (B, 1, 16, 16) float32, the current sample x_t.
        t: flow time in [0, 1] (1 = pure noise); the model gets ``1000 t``.
        class_labels: (B,) int64 in 0-9.
        guidance: CFG scale w; ``v = v_null + w (v_cond - v_null)``. 1 = no guidance (then
            only the conditional half is computed).

    Returns:
        (B, 1, 16, 16) float32 velocity ``d x_t / d t``.
    """
    batch = x.shape[0]
    if guidance == 1.0:
        timestep = torch.full((batch,), t * TIMESTEP_SCALE, dtype=x.dtype)
        return model(x, timestep=timestep, class_labels=class_labels, return_dict=False)[0]
    labels = torch.cat([class_labels, torch.full_like(class_labels, NULL_CLASS)])
    timestep = torch.full((2 * batch,), t * TIMESTEP_SCALE, dtype=x.dtype)
    both = model(torch.cat([x, x]), timestep=timestep, class_labels=labels, return_dict=False)[0]
    cond, null = both[:batch], both[batch:]
    return null + guidance * (cond - null)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    class_labels: torch.Tensor | list[int],
    steps: int = 50,
    guidance: float = 2.0,
    seed: int = 0,
    *,
    small_model: torch.nn.Module | None = None,
    stitch: TStitchConfig | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Generate digits with the flow-matching Euler sampler and batched CFG.

    The time grid is ``t_i = 1 - i / steps`` (i = 0..steps); step i moves
    ``x <- x + (t_{i+1} - t_i) v(x, t_i)``. The initial noise is drawn from
    ``torch.Generator().manual_seed(seed)``, so a seed fixes the output.

    Args:
        model: the (large) digits DiT; any cache hook installed on it stays in effect.
        class_labels: (B,) int64 digit classes 0-9.
        steps: denoising steps (>= 1), one denoiser call each.
        guidance: CFG scale (>= 1; 1 = unguided).
        seed: noise seed.
        small_model: the T-Stitch companion, needed when ``stitch`` is given.
        stitch: run the first ``stitch.small_steps(steps)`` steps with ``small_model``
            (T-Stitch, arXiv 2402.14167); None = ``model`` for every step.
        on_step: called as ``on_step(step_index, timestep_value)`` before each denoiser call
            (a hook that needs the current timestep, e.g. diffusers' pyramid attention
            broadcast, reads it here).

    Returns:
        (B, 1, 16, 16) float32 images in [-1, 1] (clamped).

    Raises:
        ValueError: ``steps < 1``, ``guidance < 1``, a label outside 0-9, or ``stitch``
            without ``small_model``.
    """
    labels = torch.as_tensor(class_labels, dtype=torch.int64)
    if steps < 1 or guidance < 1:
        raise ValueError(f"need steps >= 1 and guidance >= 1, got {steps} and {guidance}")
    if labels.numel() and not bool(((labels >= 0) & (labels < NUM_CLASSES)).all()):
        raise ValueError(f"class labels must be in 0..{NUM_CLASSES - 1}")
    if stitch is not None and small_model is None:
        raise ValueError("stitch needs small_model")
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((labels.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE), generator=generator, dtype=torch.float32).to(dtype)
    for i in range(steps):
        t, t_next = 1.0 - i / steps, 1.0 - (i + 1) / steps
        denoiser = model if stitch is None else denoiser_at(i, steps, stitch, small_model, model)
        if on_step is not None:
            on_step(i, t * TIMESTEP_SCALE)
        x = x + (t_next - t) * guided_velocity(denoiser, x, t, labels, guidance)
    return x.float().clamp(-1, 1)


# ----- quality judge -----


@dataclass
class DigitClassifier:
    """An RBF support vector classifier on the real 8x8 digits, to judge generated ones.

    Fit on every real image after the same 16x16 -> 8x8 round trip (:func:`to_8x8`) that
    generated images go through. ``holdout_accuracy`` is the accuracy of the same model
    fit on 80% of the real digits and tested on the other 20% (a ceiling for what a
    perfect generator would score).
    """

    model: Any
    holdout_accuracy: float

    @classmethod
    def fit(cls, seed: int = 0) -> DigitClassifier:
        """Train on the real digits (well under a second).

        Raises:
            ImportError: scikit-learn is not installed.
        """
        from sklearn.model_selection import train_test_split
        from sklearn.svm import SVC

        images, labels = digits_dataset()
        features, targets = to_8x8(images), labels.numpy()
        x_tr, x_te, y_tr, y_te = train_test_split(features, targets, test_size=0.2, random_state=seed, stratify=targets)
        holdout = SVC().fit(x_tr, y_tr)
        return cls(SVC().fit(features, targets), float(holdout.score(x_te, y_te)))

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Predicted classes. images: (B, 1, 16, 16) float in [-1, 1]. Returns (B,) int64."""
        return self.model.predict(to_8x8(images)).astype(np.int64)

    def accuracy(self, images: torch.Tensor, class_labels: torch.Tensor) -> tuple[float, dict[int, float]]:
        """Overall and per-class share (0-1) of ``images`` classified as their ``class_labels``.

        Args:
            images: (B, 1, 16, 16) float in [-1, 1].
            class_labels: (B,) int64, the classes they were generated for.

        Returns:
            (overall accuracy, {class: accuracy}) over the classes present.
        """
        predicted = self.predict(images)
        wanted = torch.as_tensor(class_labels).numpy()
        per_class = {int(c): float((predicted[wanted == c] == c).mean()) for c in np.unique(wanted)}
        return float((predicted == wanted).mean()), per_class


# ----- shipped weights -----


def load_digits_dit(name: str, weights_dir: Path | None = None) -> LoadedModel:
    """Build the DiT described by ``<weights_dir>/<name>.json`` and load its verified weights
    (float32, eval, no gradients). ``weights_dir`` defaults to the package's ``weights/``.

    Raises:
        WeightsError: the manifest or weight file is missing, truncated or corrupted.
    """
    manifest = read_manifest(name, weights_dir)
    model = build_dit(manifest["config"])
    (file_name,) = manifest["files"]
    state = {k: v.float() for k, v in load_tensors(manifest, file_name, weights_dir).items()}
    model.load_state_dict(state, strict=True)
    return LoadedModel(name, model.float().eval().requires_grad_(False), manifest, dict(manifest.get("extra", {})))


for _name in ("digits-dit", "digits-dit-small"):
    register(_name, lambda _name=_name: load_digits_dit(_name))
