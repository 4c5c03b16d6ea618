"""The shared block loop every method except the reference runs, and the run statistics.

Shapes: B batch, L canvas length (prompt P + generation G), N block length, V vocabulary.

Per block (semi-autoregressive, left to right) and per step until the block has no [MASK]:
1. the cache policy (:mod:`.cache`) names the positions to recompute; one forward over them;
2. the method's ``select`` turns the block's logits into a commit mask (:mod:`.core` rules);
3. committed positions take the greedy token; optionally (EoTP) masked positions after a
   committed end-of-text become end-of-text.
A block with no [MASK] left takes no step. Block-diffusion adapters (``block_diffusion = True``,
e.g. DiffusionGemma) see nothing after the current block: the engine calls their
``begin_block`` at each block start and ``block_forward`` instead of the cache policy's forward. Each forward counts once in ``forward_passes``,
whatever its width; ``positions_computed`` adds up the widths.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .adapters import DLLMAdapter
from .cache import CachePolicy, KVStore
from .core import fill_after_eos, top_tokens

__all__ = ["DecodeStats", "StepView", "decode_blocks"]


@dataclass
class DecodeStats:
    """Counters of one ``generate`` call.

    Attributes:
        forward_passes: dLLM forwards (full or partial).
        positions_computed: canvas positions run, summed over forwards (tokens).
        guide_forwards: forwards of an autoregressive guide model (``ar_guided``), 0 otherwise.
        steps_per_block: decoding steps each block took.
        gen_tokens: generated tokens per row (the generation length G).
        seconds: wall time of the decode (s).
    """

    forward_passes: int = 0
    positions_computed: int = 0
    guide_forwards: int = 0
    steps_per_block: list[int] = field(default_factory=list)
    gen_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_forward(self) -> float:
        """Generated tokens per row divided by dLLM forward passes."""
        return self.gen_tokens / max(1, self.forward_passes)

    def as_dict(self) -> dict:
        return {
            "forward_passes": self.forward_passes,
            "tokens_per_forward": round(self.tokens_per_forward, 4),
            "positions_computed": self.positions_computed,
            "guide_forwards": self.guide_forwards,
            "steps_per_block": list(self.steps_per_block),
            "seconds": self.seconds,
        }


@dataclass
class StepView:
    """What a method's ``select`` sees at one step (block positions ``start:end`` of the canvas).

    ``logits (B, N, V)``, ``tokens (B, N) int64`` greedy tokens, ``conf (B, N)`` their
    probabilities, ``candidates (B, N) bool`` still masked; ``block_step`` (0-based step index
    within the block), ``progress`` (0-1, fraction of the generation already committed).
    """

    logits: torch.Tensor
    tokens: torch.Tensor
    conf: torch.Tensor
    candidates: torch.Tensor
    canvas: torch.Tensor
    prompt_len: int
    start: int
    end: int
    block_step: int
    progress: float
    adapter: DLLMAdapter
    stats: DecodeStats


Select = Callable[[StepView], torch.Tensor]


def decode_blocks(
    adapter: DLLMAdapter,
    canvas: torch.Tensor,
    prompt_len: int,
    block_length: int,
    select: Select,
    cache: CachePolicy,
    stats: DecodeStats,
    trace: list | None = None,
    eos_fill: bool = False,
) -> torch.Tensor:
    """Decode the masked generation region of ``canvas (B, L) int64`` in place, block by block.

    Returns the canvas with no [MASK] left in the generation region. ``trace``, if a list, gets
    a copy of the canvas after every step.
    """
    t0 = time.perf_counter()
    mask_id, length = adapter.mask_id, canvas.shape[1]
    store = KVStore()
    block_diffusion = getattr(adapter, "block_diffusion", False)
    keep = cache.mode != "none" and adapter.supports_kv and not block_diffusion
    run_step = 0
    stats.gen_tokens = length - prompt_len
    for start in range(prompt_len, length, block_length):
        end = start + block_length
        block_step = 0
        if block_diffusion and bool((canvas[:, start:end] == mask_id).any()):
            adapter.begin_block(canvas, start, end)
        while bool((canvas[:, start:end] == mask_id).any()):
            if block_diffusion:  # the adapter serves the prefix from its own exact cache
                logits, ran = adapter.block_forward(canvas, start, end), torch.arange(start, end)
            else:
                positions = (
                    cache.positions(store, canvas, mask_id, prompt_len, start, end, block_step, run_step)
                    if keep
                    else None
                )
                logits, ran = store.run(adapter, canvas, positions, keep)
            stats.forward_passes += 1
            stats.positions_computed += len(ran)
            block_logits = _block_logits(logits, ran, start, end)
            tokens, conf = top_tokens(block_logits, mask_id)
            candidates = canvas[:, start:end] == mask_id
            progress = 1 - float((canvas[:, prompt_len:] == mask_id).float().mean())
            view = StepView(
                block_logits,
                tokens,
                conf,
                candidates,
                canvas,
                prompt_len,
                start,
                end,
                block_step,
                progress,
                adapter,
                stats,
            )
            commit = select(view) & candidates
            canvas[:, start:end] = torch.where(commit, tokens, canvas[:, start:end])
            if eos_fill and adapter.eos_id is not None:
                canvas = fill_after_eos(canvas, canvas == mask_id, adapter.eos_id, prompt_len)
            block_step += 1
            run_step += 1
            if trace is not None:
                trace.append(canvas.clone())
        stats.steps_per_block.append(block_step)
    stats.seconds = time.perf_counter() - t0
    return canvas


def _block_logits(logits: torch.Tensor, ran: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Logits (B, N, V) of the block positions out of a forward over positions ``ran``."""
    if len(ran) and int(ran[0]) <= start and int(ran[-1]) >= end - 1 and bool((ran[1:] - ran[:-1] == 1).all()):
        offset = start - int(ran[0])
        return logits[:, offset : offset + end - start]
    out = logits.new_zeros(logits.shape[0], end - start, logits.shape[2])
    inside = (ran >= start) & (ran < end)
    out[:, ran[inside] - start] = logits[:, inside]
    return out
