"""The built-in cache methods; importing this package registers each one."""

from hasten.diffusion.methods.bac import BACConfig, BlockwiseAdaptiveCache
from hasten.diffusion.methods.cg_taylor import CGTaylor, CGTaylorConfig
from hasten.diffusion.methods.delta_dit import DeltaDiT, DeltaDiTConfig
from hasten.diffusion.methods.first_block import FirstBlockCache, FirstBlockCacheConfig
from hasten.diffusion.methods.static import StaticCache, StaticCacheConfig
from hasten.diffusion.methods.taylorseer import TaylorSeer, TaylorSeerConfig

__all__ = [
    "BACConfig",
    "BlockwiseAdaptiveCache",
    "CGTaylor",
    "CGTaylorConfig",
    "DeltaDiT",
    "DeltaDiTConfig",
    "FirstBlockCache",
    "FirstBlockCacheConfig",
    "StaticCache",
    "StaticCacheConfig",
    "TaylorSeer",
    "TaylorSeerConfig",
]
