"""Loaders for the shipped weights (registered in :data:`hasten.arimage.models.MODELS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...diffusion.models import WeightsError, load_tensors, read_manifest
from ..adapters import ContinuousAdapter, DiscreteAdapter
from . import MODELS, TRAINING_COMMANDS, WEIGHTS_DIR
from .digits_ar import GRID, DigitsAR, codebook, tokens_to_images
from .digits_mar import TOKEN_DIM, DigitsMAR, patches_to_images

__all__ = ["load_module", "load_digits_ar", "load_digits_mar"]


def load_module(name: str, cls: type, weights_dir: Path | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build ``cls(**manifest["config"])`` and load its verified weights (float32, eval, no grad).

    Raises:
        WeightsError: the manifest or weight file is missing, truncated or corrupted.
    """
    try:
        manifest = read_manifest(name, weights_dir or WEIGHTS_DIR)
    except WeightsError as err:
        raise WeightsError(f"{err}; regenerate it with: {TRAINING_COMMANDS.get(name, '(unknown model)')}") from None
    module = cls(**manifest["config"])
    (file_name,) = manifest["files"]
    state = {k: v.float() for k, v in load_tensors(manifest, file_name, weights_dir or WEIGHTS_DIR).items()}
    module.load_state_dict(state, strict=True)
    return module.float().eval().requires_grad_(False), manifest


def load_digits_ar(weights_dir: Path | None = None) -> DiscreteAdapter:
    """``digits-ar`` as a :class:`DiscreteAdapter` (raises WeightsError as :func:`load_module`)."""
    module, manifest = load_module("digits-ar", DigitsAR, weights_dir)
    return DiscreteAdapter(module, (GRID, GRID), codebook(), tokens_to_images, "digits-ar", manifest)


def load_digits_mar(
    name: str = "digits-mar", with_draft: bool = True, weights_dir: Path | None = None
) -> ContinuousAdapter:
    """``digits-mar`` (with ``digits-mar-small`` as ``.draft``) or the small model alone."""
    module, manifest = load_module(name, DigitsMAR, weights_dir)
    draft = load_digits_mar("digits-mar-small", False, weights_dir) if with_draft else None
    return ContinuousAdapter(module, patches_to_images, TOKEN_DIM, name, manifest, draft)


MODELS.register("digits-ar", load_digits_ar)
MODELS.register("digits-mar", load_digits_mar)
MODELS.register("digits-mar-small", lambda: load_digits_mar("digits-mar-small", False))
