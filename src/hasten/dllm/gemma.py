"""Adapter for transformers' ``DiffusionGemmaForBlockDiffusion`` (block diffusion, uniform noise).

DiffusionGemma is an encoder-decoder: a causal *encoder* turns the prompt and every finished
canvas into a KV cache, and a bidirectional *decoder* denoises the current canvas (one block)
while reading that cache, with *self-conditioning* on the previous step's logits. It has no
[MASK] token: undecided positions hold uniform random tokens, drawn afresh every step.

How hasten's samplers run on it (``block_diffusion = True``: the engine calls
:meth:`DiffusionGemmaAdapter.begin_block` at each block start and
:meth:`DiffusionGemmaAdapter.block_forward` for each step):

* the canvas marks undecided positions with :attr:`mask_id` = ``vocab_size``, a sentinel one
  past the vocabulary that the model never sees: before each decoder forward they are replaced
  by uniform random tokens (the model's own noise), from a generator re-seeded at every block
  start, so two methods that take the same steps see the same noise;
* ``begin_block`` encodes the new part of the prefix (prompt + finished blocks) into the
  encoder cache (exact: the encoder is causal) and clears the self-conditioning signal;
* ``block_forward`` runs the decoder over the block with the previous step's logits as
  self-conditioning; nothing after the block is visible (block diffusion), so hasten's
  approximate KV caches (``cache="prefix" | "dual" | ...``) have nothing to reuse here: the
  prefix is always served from the exact encoder cache and the options are accepted as no-ops.

Where this differs from ``DiffusionGemmaForBlockDiffusion.generate`` (its entropy-bound sampler):
(1) generate *re-decides* every step which tokens to keep - the lowest-entropy ones whose summed
entropy minus the largest stays under ``entropy_bound`` (arXiv 2505.24857) - over the whole
canvas, so a token kept earlier can be re-noised; hasten's methods commit a token for good;
(2) generate samples kept tokens at a linearly scheduled temperature, hasten takes the greedy
token; (3) generate returns the *argmax* canvas of its last step and runs a fixed number of
steps (``max_denoising_steps``, or until its stability/confidence stop), hasten stops when no
position is undecided. With one step per block they coincide: the block is the decoder's argmax
over a random canvas without self-conditioning, after the same encoder prefix - tested against
generate token for token (``tests/dllm/test_dllm_gemma.py``).

Shapes: B batch, L canvas length, N block length, V vocabulary (``text_config.vocab_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["DiffusionGemmaAdapter", "NoiseFn"]

NoiseFn = Callable[[int, int, int], torch.Tensor]
"""``noise(batch, block_length, block_start) -> (B, N) int64`` uniform random token ids."""


class DiffusionGemmaAdapter:
    """A :class:`~hasten.dllm.adapters.DLLMAdapter` for ``DiffusionGemmaForBlockDiffusion``.

    Args:
        model: a ``transformers.DiffusionGemmaForBlockDiffusion`` (any dtype; its logits are float32).
        noise_seed: seed of the undecided positions' uniform noise (re-seeded per block start).
        noise: optional ``noise(B, N, start)`` returning the random tokens for one step instead
            (tests use it to replay the noise of transformers' own ``generate``).

    Raises:
        TypeError: ``model`` is not a DiffusionGemma block-diffusion model.
    """

    block_diffusion = True
    supports_kv = False

    def __init__(self, model: Any, noise_seed: int = 0, noise: NoiseFn | None = None) -> None:
        if getattr(getattr(model, "config", None), "model_type", None) != "diffusion_gemma":
            raise TypeError(f"expected a DiffusionGemmaForBlockDiffusion, got {type(model).__name__}")
        self.model = model
        text = model.config.text_config
        self.vocab_size = int(text.vocab_size)
        self.mask_id: int | None = self.vocab_size  # sentinel: never a real token, never fed to the model
        eos = text.eos_token_id
        self.eos_id: int | None = eos[0] if isinstance(eos, (list, tuple)) else eos
        self.max_length = int(text.max_position_embeddings)
        self.noise_seed = noise_seed
        self._noise = noise
        self._generator = torch.Generator()
        self._cache = None
        self._encoded: torch.Tensor | None = None
        self._self_conditioning: torch.Tensor | None = None

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.model.model.decoder.layers

    @property
    def dtype(self) -> torch.dtype:
        return self.model.model.decoder.embed_tokens.weight.dtype

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Identity; raises ValueError for an id outside ``0..vocab_size-1``."""
        if bool(((ids < 0) | (ids >= self.vocab_size)).any()):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1} for this model")
        return ids

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return ids

    def forward(self, ids, positions, past=None, return_kv=False):
        """Refused: a block-diffusion model only scores a block after its finished prefix, never a
        whole canvas (the samplers call :meth:`block_forward`, as ``block_diffusion`` is True).

        Raises:
            TypeError: always.
        """
        raise TypeError("DiffusionGemma scores one block after its prefix: call begin_block, then block_forward")

    def begin_block(self, canvas: torch.Tensor, start: int, end: int) -> None:
        """Encode ``canvas[:, :start]`` (prompt + finished blocks, no undecided position) into the
        encoder cache - only what is new since the last call when it extends the same prefix -
        clear self-conditioning and re-seed the noise for this block.

        Raises:
            ValueError: the prefix still holds undecided positions.
        """
        from transformers import DynamicCache

        prefix = canvas[:, :start]
        if bool((prefix == self.mask_id).any()):
            raise ValueError("the prefix of a block must be fully decoded before the block starts")
        done = self._encoded
        reuse = (
            done is not None
            and done.shape[0] == prefix.shape[0]
            and done.shape[1] <= start
            and bool((prefix[:, : done.shape[1]] == done).all())
        )
        if not reuse:
            self._cache, done = DynamicCache(config=self.model.config.get_text_config(decoder=True)), prefix[:, :0]
        new = prefix[:, done.shape[1] :]
        if new.shape[1]:
            first = done.shape[1]
            position_ids = torch.arange(first, start, device=canvas.device)[None]
            out = self.model.model.encoder(input_ids=new, cache=self._cache, position_ids=position_ids)
            self._cache = out.cache
        self._encoded = prefix.clone()
        self._self_conditioning = None
        self._generator.manual_seed(self.noise_seed * 1_000_003 + start)

    def block_forward(self, canvas: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Decoder logits ``(B, N, V) float32`` for the block ``canvas[:, start:end]``, undecided
        positions replaced by fresh uniform noise, self-conditioned on the previous step's logits
        within this block. Call :meth:`begin_block` first."""
        block = canvas[:, start:end]
        undecided = block == self.mask_id
        if self._noise is not None:
            noise = self._noise(block.shape[0], block.shape[1], start).to(block.device)
        else:
            noise = torch.randint(0, self.vocab_size, block.shape, generator=self._generator).to(block.device)
        tokens = torch.where(undecided, noise, block)
        positions = torch.arange(start, end, device=canvas.device)[None]
        sc = self._self_conditioning
        out = self.model(
            decoder_input_ids=tokens,
            cache=self._cache,
            self_conditioning_logits=None if sc is None else sc.to(self.dtype),
            decoder_position_ids=positions,
        )
        self._self_conditioning = out.logits
        return out.logits


def _register() -> None:
    from .adapters import ADAPTERS

    def build(model: Any, **options: Any) -> DiffusionGemmaAdapter:
        return DiffusionGemmaAdapter(model, **options)

    try:
        from transformers import DiffusionGemmaForBlockDiffusion
    except ImportError:  # an older transformers without the model
        return
    ADAPTERS.register("diffusion_gemma", build, key_type=DiffusionGemmaForBlockDiffusion, replace=True)


_register()
