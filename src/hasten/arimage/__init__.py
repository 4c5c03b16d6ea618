"""Autoregressive image generation, faster: speculative Jacobi decoding and relatives.

    import hasten.arimage as ha
    model = ha.load("digits-ar")
    images, stats = ha.generate(model, [0, 1, 2], method="sjd", cfg_scale=3.0, top_k=8, seed=0)

Methods (:func:`list_methods`, one file each in :mod:`hasten.arimage.methods`):

* ``reference``: plain AR sampling, one token per forward with a KV cache (the baseline).
* ``sjd``: Speculative Jacobi Decoding, arXiv 2410.01699 (lossless in distribution).
* ``gsd``: Grouped Speculative Decoding, arXiv 2508.07747 (lossy, measured).
* ``lantern``: LANTERN relaxed acceptance, arXiv 2410.03355, on Jacobi drafts (lossy).
* ``continuous_sd``: continuous speculative decoding, arXiv 2411.11925 (MAR-style models).
* ``disa``: diffusion-step annealing of the diffusion head, arXiv 2505.20297 (lossy).

Models (:func:`load`): ``digits-ar``, ``digits-mar`` (+ ``digits-mar-small`` as its draft).
Bench: ``hasten bench-arimage`` (:mod:`hasten.arimage.bench`). See docs/ARIMAGE.md.
"""

from .adapters import ContinuousAdapter, DiscreteAdapter, ImageTokenModel
from .core import CFGRows, DecodeSettings
from .generate import GenerationStats, generate, image_generator, list_methods
from .methods import METHODS, ImageStats, MethodSpec
from .models import MODELS, load

__all__ = [
    "generate",
    "load",
    "list_methods",
    "image_generator",
    "GenerationStats",
    "ImageStats",
    "MethodSpec",
    "METHODS",
    "MODELS",
    "CFGRows",
    "DecodeSettings",
    "DiscreteAdapter",
    "ContinuousAdapter",
    "ImageTokenModel",
]
