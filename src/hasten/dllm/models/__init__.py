"""Diffusion LMs shipped with hasten (weights inside the package, verified by sha256).

    import hasten.dllm as hl
    adapter, tokenizer = hl.load("mdlm-small")

Built in: ``"mdlm-small"`` - a 2.4M-parameter Llama-shaped masked-diffusion LM
(:mod:`.mdlm`) trained by ``training/train_dllm.py`` on GSM8K-style arithmetic and Python
standard-library source, with SmolLM2's tokenizer restricted to a 3051-token vocabulary (the
id map ships in the weights file as ``vocab.smollm2_ids``). The manifest format is the one of
:mod:`hasten.diffusion.models` (``weights/<name>.json`` + ``weights/<name>.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...diffusion.models import WeightsError, load_tensors, read_manifest
from ...registry import Registry
from .mdlm import MaskedDiffusionLM, MDLMConfig

__all__ = ["MODELS", "WEIGHTS_DIR", "WeightsError", "load_mdlm"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODELS: Registry[Any] = Registry("dLLM model")


def load_mdlm(name: str = "mdlm-small", dtype: torch.dtype = torch.float32, weights_dir: Path | None = None):
    """Load a shipped :class:`MaskedDiffusionLM` as an adapter, with SmolLM2's tokenizer.

    Returns (adapter, tokenizer); the adapter's ``encode_ids``/``decode_ids`` speak the
    tokenizer's ids. Raises :class:`WeightsError` (naming the training command) when the weight
    file is missing or does not match its manifest.
    """
    from ... import load_model
    from ..adapters import MDLMAdapter

    weights_dir = weights_dir or WEIGHTS_DIR
    manifest = read_manifest(name, weights_dir)
    tensors = load_tensors(manifest, f"{name}.safetensors", weights_dir)
    vocab_map = tensors.pop("vocab.smollm2_ids").long()
    net = MaskedDiffusionLM(MDLMConfig(**manifest["config"]))
    net.load_state_dict({k: v.to(dtype) for k, v in tensors.items()})
    net.to(dtype).eval().requires_grad_(False)
    extra = manifest["extra"]
    _, tokenizer = load_model(extra["tokenizer"])
    adapter = MDLMAdapter(net, mask_id=extra["mask_id"], eos_id=extra["eos_id"], vocab_map=vocab_map)
    adapter.manifest = manifest
    return adapter, tokenizer


MODELS.register("mdlm-small", load_mdlm)
