"""The reference sampler: LLaDA's low-confidence remasking with semi-autoregressive blocks.

Nie et al., "Large Language Diffusion Models", arXiv 2502.09992 (Algorithm 5 with blocks):
the generation region starts all [MASK]; blocks of ``block_length`` are decoded left to right;
within a block, ``steps_per_block`` steps each run the model over the *whole* canvas, take the
greedy token and its probability at every position, and commit the most confident masked
positions of the block - as many as LLaDA's schedule gives that step (the block's masked count
spread evenly, remainder first). Greedy (temperature 0). Every method must reduce to this.
Shapes: B batch, L canvas length, N block length.
"""

from __future__ import annotations

import time

import torch

from .adapters import DLLMAdapter
from .core import low_confidence_topk, num_transfer_tokens, top_tokens
from .engine import DecodeStats

__all__ = ["reference_sample"]


def reference_sample(
    adapter: DLLMAdapter,
    canvas: torch.Tensor,
    prompt_len: int,
    block_length: int,
    steps_per_block: int,
    stats: DecodeStats,
    trace: list | None = None,
) -> torch.Tensor:
    """Fill the [MASK] positions of ``canvas (B, L) int64`` after ``prompt_len``; returns the canvas."""
    t0, mask_id, length = time.perf_counter(), adapter.mask_id, canvas.shape[1]
    positions = torch.arange(length, device=canvas.device)
    stats.gen_tokens = length - prompt_len
    for start in range(prompt_len, length, block_length):
        end = start + block_length
        schedule = num_transfer_tokens(canvas[:, start:end] == mask_id, steps_per_block)
        taken = 0
        block_diffusion = getattr(adapter, "block_diffusion", False)
        if block_diffusion and bool((canvas[:, start:end] == mask_id).any()):
            adapter.begin_block(canvas, start, end)
        for step in range(steps_per_block):
            candidates = canvas[:, start:end] == mask_id
            if not bool(candidates.any()):
                break
            taken += 1
            if block_diffusion:  # sees the finished prefix (from its encoder cache) and the block only
                block_logits = adapter.block_forward(canvas, start, end)
                stats.positions_computed += end - start
            else:
                block_logits = adapter.forward(canvas, positions)[0][:, start:end]
                stats.positions_computed += length
            stats.forward_passes += 1
            tokens, conf = top_tokens(block_logits, mask_id)
            commit = low_confidence_topk(conf, candidates, schedule[:, step])
            canvas[:, start:end] = torch.where(commit, tokens, canvas[:, start:end])
            if trace is not None:
                trace.append(canvas.clone())
        stats.steps_per_block.append(taken)
    stats.seconds = time.perf_counter() - t0
    return canvas
