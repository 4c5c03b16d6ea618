"""AR image models trained here and shipped with hasten (weights verified against a manifest).

    import hasten.arimage as ha
    model = ha.load("digits-ar")      # a DiscreteAdapter over the trained DigitsAR
    model.manifest["training"]["command"]

Built in (:data:`MODELS`):

* ``"digits-ar"``: class-conditional AR transformer over 64 quantised-pixel tokens
  (16 levels) of scikit-learn's 8x8 digits (:mod:`.digits_ar`), trained by
  ``training/train_digits_ar.py``.
* ``"digits-mar"``: MAR-style continuous-token model (64 tokens of 2x2 pixels, causal
  transformer + MLP diffusion head, :mod:`.digits_mar`), loaded with ``"digits-mar-small"``
  attached as its draft (``model.draft``), trained by ``training/train_digits_mar.py``.
* ``"digits-mar-small"``: the draft alone.

Format: ``weights/<name>.json`` + ``weights/<name>.safetensors``, the manifest format of
:mod:`hasten.diffusion.models` (sha256 and size checked before loading). A missing or
corrupted file raises :class:`hasten.diffusion.models.WeightsError` naming the training
command that regenerates it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...registry import Registry

__all__ = ["WEIGHTS_DIR", "MODELS", "TRAINING_COMMANDS", "load"]

WEIGHTS_DIR = Path(__file__).parent / "weights"

TRAINING_COMMANDS = {
    "digits-ar": "python training/train_digits_ar.py",
    "digits-mar": "python training/train_digits_mar.py --size base",
    "digits-mar-small": "python training/train_digits_mar.py --size small",
}

MODELS: Registry[Callable[[], Any]] = Registry("arimage model", builtin_modules=("hasten.arimage.models.shipped",))


def load(name: str) -> Any:
    """The model registered as ``name``, as a sampler adapter (eval mode, float32).

    Raises:
        hasten.registry.UnknownNameError: no such model (the message lists the known ones).
        hasten.diffusion.models.WeightsError: a weight file or manifest is missing,
            truncated or corrupted (the message names the training command).
    """
    return MODELS.get(name)()
