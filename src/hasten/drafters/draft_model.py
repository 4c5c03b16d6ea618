"""Draft-model drafting: a smaller causal LM with the target's vocabulary drafts a chain.

The classic speculative decoding setup (Leviathan et al., "Fast Inference from
Transformers via Speculative Decoding", arXiv 2211.17192; Chen et al., "Accelerating
Large Language Model Decoding with Speculative Sampling", arXiv 2302.01318). The draft
model keeps its own KV cache, rolled back to the longest prefix it shares with the
committed tokens before each draft. Drafting stops early when the draft model's own top
probability falls below ``confidence_threshold``. When sampling, draft tokens are drawn
from the draft's processed distribution and returned with it, so the engine applies the
speculative sampling rule.

``draft_model="self:k"`` builds a truncated copy of the target (its first k layers + final
norm + head, weights shared, no copy) for Llama-style models that slice their layers by
``config.num_hidden_layers``.

Dims: V vocabulary, K drafted tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from .. import kv
from ..tree import DraftTree
from .base import Drafter, MethodSpec, register
from .chain import draft_chain


@dataclass(frozen=True)
class DraftModelConfig:
    """Draft-model settings.

    Attributes:
        draft_model: the draft ``nn.Module`` (a causal LM with the target's vocabulary), or
            ``"self:k"`` for the target's first k layers.
        max_draft: most tokens drafted per step (K); more = more draft forwards and a
            larger verification when the draft is right.
        confidence_threshold: stop drafting after a token whose draft probability is below
            this (fraction 0-1); 0 never stops early, higher drafts fewer, safer tokens.
        branch: candidates per depth (1 = a chain). With b > 1 each depth also offers the
            draft's next b-1 candidates as leaf siblings (top-k by draft probability when
            greedy; drawn without replacement when sampling, verified by recursive
            rejection sampling) at no extra draft forward; more = a wider verification.

    Raises:
        ValueError: no draft model, ``max_draft < 1``, ``branch < 1``, threshold outside [0, 1].
    """

    draft_model: Any = None
    max_draft: int = 5
    confidence_threshold: float = 0.3
    branch: int = 1

    def __post_init__(self) -> None:
        if self.draft_model is None:
            raise ValueError("method 'draft_model' needs draft_model= (a causal LM or 'self:k')")
        if self.max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {self.max_draft}")
        if self.branch < 1:
            raise ValueError(f"branch must be >= 1, got {self.branch}")
        if not 0 <= self.confidence_threshold <= 1:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")


def truncated_copy(model: torch.nn.Module, num_layers: int) -> torch.nn.Module:
    """The target's first ``num_layers`` decoder layers + final norm + LM head, sharing
    weights with ``model`` (nothing is copied but module containers and the config).

    Raises:
        ValueError: ``num_layers`` outside [1, layers) or a model that does not slice its
            layers by ``config.num_hidden_layers`` (not Llama-style).
    """
    total = getattr(model.config, "num_hidden_layers", None)
    inner = getattr(model, "model", None)
    if total is None or inner is None or not hasattr(inner, "layers"):
        raise ValueError(f"'self:k' needs a Llama-style model (model.model.layers); got {type(model).__name__}")
    if not 1 <= num_layers < total:
        raise ValueError(f"'self:{num_layers}': k must be in [1, {total - 1}]")

    def shallow(module: torch.nn.Module) -> torch.nn.Module:
        clone = copy.copy(module)
        clone._modules = dict(module._modules)
        return clone

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = num_layers
    for attr in ("layer_types",):
        if isinstance(getattr(config, attr, None), list):
            setattr(config, attr, getattr(config, attr)[:num_layers])
    draft = shallow(model)
    draft.model = shallow(inner)
    draft.model.layers = torch.nn.ModuleList(list(inner.layers[:num_layers]))
    draft.config = draft.model.config = config
    return draft


def resolve_draft_model(spec: Any, target: torch.nn.Module) -> torch.nn.Module:
    """A module from ``draft_model=``: a module as is, or ``"self:k"``.

    Raises:
        ValueError: an unrecognized string.
    """
    if isinstance(spec, str):
        if spec.startswith("self:") and spec[5:].isdigit():
            return truncated_copy(target, int(spec[5:]))
        raise ValueError(
            f"draft_model string must be 'self:k' (k layers of the target), got {spec!r}; "
            "load other models with hasten.load_model and pass the module"
        )
    return spec


class DraftModelDrafter(Drafter):
    """Autoregressive chain drafting with a second model (see module docstring)."""

    name = "draft_model"
    proposes_distributions = True

    def __init__(self, config: DraftModelConfig):
        self.config = config

    def begin(self, request) -> None:
        super().begin(request)
        self.model = resolve_draft_model(self.config.draft_model, request.target)
        draft_vocab = self.model.get_output_embeddings().weight.shape[0]
        if draft_vocab != request.vocab_size:
            raise ValueError(
                f"draft model vocabulary ({draft_vocab}) differs from the target's "
                f"({request.vocab_size}); speculative decoding needs a shared vocabulary"
            )
        self.cache = kv.new_cache(self.model)
        self.cache_kw = kv.cache_kwarg(self.model)
        self.cached: list[int] = []  # tokens whose KV is in self.cache
        self.forwards = 0

    def _feed(self, new_tokens: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids = torch.tensor([new_tokens], dtype=torch.long, device=device)
        out = self.model(input_ids=ids, use_cache=True, **{self.cache_kw: self.cache})
        self.cached.extend(new_tokens)
        self.forwards += 1
        return out.logits[0, -1]

    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        params = self.request.params
        common = 0
        limit = min(len(self.cached), len(tokens) - 1)
        while common < limit and self.cached[common] == tokens[common]:
            common += 1
        kv.rollback(self.cache, common)
        del self.cached[common:]
        first = self._feed(tokens[common:])
        return draft_chain(
            first,
            lambda token: self._feed([token]),
            params,
            tokens,
            min(self.config.max_draft, max_depth),
            self.config.confidence_threshold,
            self.request.generator,
            branch=self.config.branch,
        )

    def stats(self) -> dict:
        return {"draft_forward_passes": self.forwards}


register(
    MethodSpec(
        "draft_model",
        DraftModelConfig,
        DraftModelDrafter,
        "a smaller causal LM with the same vocabulary drafts a chain (arXiv 2211.17192)",
        needs_draft_model=True,
    )
)
