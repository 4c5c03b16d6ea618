"""Training-free diffusion acceleration: reversible block caching and forecasting hooks.

    import hasten.diffusion as hd
    handle = hd.enable(pipe.transformer, hd.FirstBlockCacheConfig(threshold=0.08))
    image = pipe(prompt_embeds=..., num_inference_steps=50).images[0]
    print(handle.summary())
    hd.disable(pipe.transformer)   # the model is exactly as before

Works on diffusers' Flux, SD3, PixArt, DiT and Wan transformers and
``UNet2DConditionModel`` out of the box, and on any ``nn.Module`` given a
:class:`DenoiserSpec` saying where its blocks are.

Glossary:

* **denoiser**: the network called once per denoising step (per CFG branch).
* **block**: one of the denoiser's repeated layers (transformer block, UNet down/mid/up
  block); the unit that is computed, reused, forecast or bypassed.
* **step index** (0, 1, ... within a run) vs **timestep** (the value passed to the
  denoiser, e.g. 999 -> 0 or sigma 1 -> 0). Schedules in configs use step indices.
* **run**: one sampling loop. **lane**: one CFG branch of a run (see :mod:`.state`).
* **cache refresh step**: a step where a block runs and its cached feature is renewed.
  **reuse step**: the block's stored feature is used as is. **forecast step**: the
  feature is extrapolated from earlier ones. **warm-up steps**: the first steps of a
  run, always computed.
* **feature**: what is cached per block, its residual (output - input) or its output.
* **residual diff**: relative L1 change of a feature, ``sum|new - old| / sum|old|``.

Dims used in docstrings: B batch, T tokens, C channels, H height, W width.
"""

from hasten.diffusion.blocks import BlockGroup, DenoiserSpec, register_denoiser
from hasten.diffusion.cache import CacheHandle, disable, enable, handle_of
from hasten.diffusion.methods import (
    BACConfig,
    CGTaylorConfig,
    DeltaDiTConfig,
    FirstBlockCacheConfig,
    StaticCacheConfig,
    TaylorSeerConfig,
)
from hasten.diffusion.metrics import psnr, relative_l1, ssim
from hasten.diffusion.policy import Action, CachePolicy, FeatureKind, register_policy
from hasten.diffusion.summary import ActionCounts, CacheSummary

__all__ = [
    "Action",
    "ActionCounts",
    "BACConfig",
    "BlockGroup",
    "CGTaylorConfig",
    "CacheHandle",
    "CachePolicy",
    "CacheSummary",
    "DeltaDiTConfig",
    "DenoiserSpec",
    "FeatureKind",
    "FirstBlockCacheConfig",
    "StaticCacheConfig",
    "TaylorSeerConfig",
    "disable",
    "enable",
    "handle_of",
    "psnr",
    "register_denoiser",
    "register_policy",
    "relative_l1",
    "ssim",
]
