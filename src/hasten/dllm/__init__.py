"""Diffusion language models: training-free parallel decoding and approximate KV caching.

    import hasten.dllm as hl
    model, tok = hl.load("mdlm-small")
    ids = tok("Question: ...\\nAnswer:\\n", return_tensors="pt").input_ids
    out = hl.generate(model, ids, gen_length=128, block_length=32, method="fast_dllm",
                      method_options={"threshold": 0.9, "cache": "dual"})
    out.sequences, out.stats

Layers: :mod:`.core` (pure unmasking rules), :mod:`.adapters` (mask token, span forward with
KV, blocks), :mod:`.cache` (which positions a step recomputes), :mod:`.reference` (LLaDA's
sampler, one screen), :mod:`.engine` (the block loop the methods share), :mod:`.methods` (one
file per method), :mod:`.models` (the shipped ``mdlm-small``), :mod:`.bench` (``hasten bench-dllm``).
See docs/DLLM.md.
"""

from .adapters import ADAPTERS, DLLMAdapter, MDLMAdapter, as_adapter
from .api import DLLMOutput, build_method, generate, load
from .engine import DecodeStats
from .methods import METHODS, MethodSpec
from .models import MODELS

__all__ = [
    "ADAPTERS",
    "DLLMAdapter",
    "MDLMAdapter",
    "as_adapter",
    "DLLMOutput",
    "build_method",
    "generate",
    "load",
    "DecodeStats",
    "METHODS",
    "MethodSpec",
    "MODELS",
]
