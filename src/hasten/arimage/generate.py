"""``generate``: images from an AR image model with any registered method.

Each image is sampled on its own generator, seeded from (seed, image index) by NumPy's
``SeedSequence`` mixing, so an image depends on its seed and index only, never on the
other images of the call or on the method's batch layout; the same seeds give the
reference sampler and every method the same random streams to start from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .core import COND, UNCOND, DecodeSettings
from .methods import METHODS, ImageStats

__all__ = ["GenerationStats", "generate", "image_generator", "list_methods"]


@dataclass
class GenerationStats:
    """What a :func:`generate` call did.

    Attributes:
        method: method name. images: number of images. seconds: wall time (s).
        per_image: one :class:`hasten.arimage.methods.ImageStats` per image.
        tokens: the generated tokens before decoding, (B, L) int64 (discrete) or (B, L, D)
            float (continuous); None for an empty call.
    """

    method: str
    images: int
    seconds: float
    per_image: list[ImageStats] = field(default_factory=list)
    tokens: torch.Tensor | None = None

    @property
    def forwards(self) -> int:
        """Target transformer forwards, all images (each over the image's CFG rows)."""
        return sum(s.forwards for s in self.per_image)

    @property
    def forwards_per_image(self) -> float:
        return self.forwards / max(1, self.images)

    @property
    def mean_accepted_tokens(self) -> float:
        """τ: tokens committed per target forward."""
        return sum(s.tokens for s in self.per_image) / max(1, self.forwards)

    @property
    def acceptance_rate(self) -> float:
        """Accepted drafts / drafted tokens (0 when nothing was drafted)."""
        drafted = sum(s.drafted for s in self.per_image)
        return sum(s.accepted for s in self.per_image) / drafted if drafted else 0.0


def list_methods() -> tuple[str, ...]:
    """Every registered method name."""
    return METHODS.names()


def image_generator(seed: int, index: int) -> torch.Generator:
    """The RNG of image ``index`` of a call with ``seed``."""
    state = np.random.SeedSequence([int(seed) % (1 << 63), int(index)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) % (1 << 63))


def _check_labels(labels: Sequence[int] | torch.Tensor, num_classes: int) -> list[int]:
    values = torch.as_tensor(labels).flatten().tolist()
    for value in values:
        if not (isinstance(value, int) and 0 <= value < num_classes):
            raise ValueError(f"unknown class label {value!r}: the model has classes 0..{num_classes - 1}")
    return values


@torch.no_grad()
def generate(
    model: Any,
    labels: Sequence[int] | torch.Tensor,
    method: str = "sjd",
    *,
    cfg_scale: float = 3.0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    cfg_roles: tuple[str, ...] = (COND, UNCOND),
    config: Any = None,
    **options: Any,
) -> tuple[torch.Tensor, GenerationStats]:
    """Generate one image per class label.

    Args:
        model: an adapter (:func:`hasten.arimage.load`, or :mod:`hasten.arimage.adapters`).
        labels: (B,) class labels in 0..num_classes-1.
        method: a registered name (:func:`list_methods`): ``reference``, ``sjd``, ``gsd``,
            ``lantern`` (discrete tokens), ``continuous_sd``, ``disa`` (continuous).
        cfg_scale: classifier-free guidance scale (>= 1; 1 = off, only the cond row runs).
        temperature, top_k, top_p: applied after guidance (top_k 0 / top_p 1 = off;
            discrete tokens only).
        seed: image i uses :func:`image_generator` (seed, i).
        cfg_roles: the model-row order of the CFG roles (the output does not depend on it).
        config: the method's config dataclass; or pass its fields as ``options``.

    Returns:
        images: (B, C, H, W) float32 in [-1, 1] (the model's decoder).
        stats: :class:`GenerationStats`.

    Raises:
        ValueError: an unknown class label, top_k > vocabulary, a setting or method
            option out of range, or a method that does not run on this model's token kind.
        hasten.registry.UnknownNameError: an unknown method.
    """
    spec = METHODS.get(method)
    if config is None:
        config = spec.config_type(**options)
    elif options:
        raise ValueError("pass either config or method options, not both")
    elif not isinstance(config, spec.config_type):
        raise TypeError(f"method {method!r} takes a {spec.config_type.__name__}, got {type(config).__name__}")
    if model.kind not in spec.kinds:
        raise ValueError(f"method {method!r} runs on {'/'.join(spec.kinds)} tokens; {model.name} has {model.kind}")
    settings = DecodeSettings(cfg_scale, temperature, top_k, top_p, tuple(cfg_roles))
    vocab = getattr(model, "vocab_size", None)
    if vocab is not None and top_k > vocab:
        raise ValueError(f"top_k={top_k} is larger than the vocabulary ({vocab} tokens)")
    values = _check_labels(labels, model.num_classes)
    sampler = spec.build(config)
    started = time.perf_counter()
    tokens, per_image = [], []
    for index, label in enumerate(values):
        image_tokens, image_stats = sampler.sample(model, label, settings, image_generator(seed, index))
        tokens.append(image_tokens)
        per_image.append(image_stats)
    seconds = time.perf_counter() - started
    stacked = torch.stack(tokens) if tokens else None
    images = model.decode(stacked) if tokens else torch.zeros(0)
    return images, GenerationStats(method, len(values), seconds, per_image, stacked)
