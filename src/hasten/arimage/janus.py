"""An :class:`hasten.arimage.adapters.ImageTokenModel` over transformers' Janus image
generation (``JanusForConditionalGeneration``; Chen et al., "Janus-Pro: Unified Multimodal
Understanding and Generation with Data and Model Scaling", arXiv 2501.17811), so the
samplers here (reference, ``sjd``, ``gsd``, ``lantern``) drive a real architecture.

Mapping onto the protocol: a *class* is a text prompt (token ids ending with the
begin-of-image token, every class's prompt the same length); the null class is Janus's own
unconditional row: the prompt with every token except BOS and BOI replaced by the pad token
(what ``JanusForConditionalGeneration.generate`` builds for CFG). Protocol position 0 (the
class slot) is the whole prompt, run as one prefill; image token i is embedded by
``prepare_embeddings_for_image_generation`` and scored by the generation head
(``model.generation_head``), as transformers' image loop does. The KV cache is a
``DynamicCache`` cropped in protocol units. Decoding uses the VQ-VAE
(``decode_image_tokens``), mapped to (B, C, H, W) in [-1, 1].

Dims: R rows, T new positions, P prompt tokens, V image codebook, L image tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["JanusAdapter", "JanusCache", "tiny_janus"]


@dataclass
class JanusCache:
    """A transformers ``DynamicCache`` plus the prompt length; ``length`` and ``crop`` count
    protocol positions (prompt = 1)."""

    cache: Any
    prompt_len: int

    @property
    def length(self) -> int:
        seen = self.cache.get_seq_length()
        return 0 if seen == 0 else seen - self.prompt_len + 1

    def crop(self, length: int) -> None:
        if length < 1:
            raise ValueError("a Janus cache keeps at least the prompt (length >= 1)")
        drop = self.cache.get_seq_length() - (self.prompt_len - 1 + length)
        if drop > 0:
            self.cache.crop(-drop)  # transformers 5: a negative count removes that many positions


class JanusAdapter:
    """Janus image generation as a class-conditional discrete-token model.

    Args:
        model: a ``JanusForConditionalGeneration`` (eval mode).
        prompts: (num_classes, P) int64 prompt ids per class, each ending with BOI.
        bos_id, boi_id, pad_id: the text vocabulary's begin-of-sequence, begin-of-image and
            pad ids (a checkpoint's ``generation_config`` has them; the unconditional row
            keeps BOS and BOI and pads the rest).
        name: model name for records.

    Raises:
        ValueError: prompts not 2-D, or not ending with the model's BOI token.
    """

    kind = "discrete"

    def __init__(self, model: Any, prompts: torch.Tensor, bos_id: int, boi_id: int, pad_id: int, name: str = "janus"):
        config = model.config
        if prompts.dim() != 2 or not bool((prompts[:, -1] == boi_id).all()):
            raise ValueError(f"prompts must be (classes, P) int64 ids each ending with BOI ({boi_id})")
        self.model, self.prompts, self.name, self.manifest = model.eval(), prompts.long(), name, {}
        null = self.prompts[:1].clone()
        null[(null != bos_id) & (null != boi_id)] = pad_id
        self._null_prompt = null[0]
        self.seq_len = int(config.vision_config.num_image_tokens)
        side = math.isqrt(self.seq_len)
        self.grid = (side, side)
        self.vocab_size = int(config.vq_config.num_embeddings)
        self.num_classes = int(prompts.shape[0])
        self.null_class = self.num_classes
        self.codebook = model.model.vqmodel.quantize.embedding.weight.detach().float()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def new_cache(self) -> JanusCache:
        from transformers import DynamicCache

        return JanusCache(DynamicCache(config=self.model.config.text_config), int(self.prompts.shape[1]))

    def _prompt_ids(self, class_ids: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [self._null_prompt if int(c) == self.null_class else self.prompts[int(c)] for c in class_ids]
        )

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor, cache: JanusCache) -> torch.Tensor:
        """tokens (R, T) int64 at protocol positions cache.length..; returns (R, T, V) logits."""
        start = cache.length
        if start + tokens.shape[1] > self.seq_len:
            raise ValueError(f"positions {start}..{start + tokens.shape[1] - 1} exceed {self.seq_len} tokens")
        parts = []
        if start == 0:
            parts.append(self.model.get_input_embeddings()(self._prompt_ids(class_ids)))
            tokens = tokens[:, 1:]
        if tokens.shape[1]:
            parts.append(self.model.prepare_embeddings_for_image_generation(tokens))
        embeds = torch.cat(parts, dim=1)
        out = self.model.model.language_model(inputs_embeds=embeds, cache=cache.cache, use_cache=True)
        hidden = out.last_hidden_state
        if start == 0:
            hidden = hidden[:, self.prompts.shape[1] - 1 :]
        return self.model.model.generation_head(hidden)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 -> (B, C, H, W) float32 in [-1, 1]."""
        return self.model.decode_image_tokens(tokens).permute(0, 3, 1, 2).float().clamp(-1, 1)


def tiny_janus(seed: int = 0, dtype: torch.dtype = torch.float64, num_classes: int = 3) -> JanusAdapter:
    """A randomly initialised tiny Janus (16 image tokens on a 4x4 grid, 32-entry codebook)
    with one 4-token prompt per class; wiring tests only, no download."""
    from transformers import JanusConfig, JanusForConditionalGeneration

    torch.manual_seed(seed)
    text = dict(
        model_type="llama",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        num_image_tokens=16,
        projection_dim=32,
        mlp_ratio=2.0,
    )
    vq = dict(
        embed_dim=8,
        num_embeddings=32,
        latent_channels=32,
        base_channels=32,
        channel_multiplier=[1, 1],
        num_res_blocks=1,
        projection_dim=32,
        image_token_embed_dim=32,
        num_patches=4,
    )
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq)
    model = JanusForConditionalGeneration(config).to(dtype).eval()
    bos, boi, pad = 0, 2, 1
    prompts = torch.tensor([[bos, 10 + c, 20 + c, boi] for c in range(num_classes)])
    return JanusAdapter(model, prompts, bos, boi, pad, name="janus-tiny")
