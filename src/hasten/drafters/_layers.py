"""Running a decoder-only LM layer by layer, for self-speculative drafters.

Self-speculative drafters (layer skipping, early exit) run only part of the target over
their draft tokens, appending to the engine's KV cache of the target (the engine rolls
every layer back after ``propose``, then verification recomputes all layers). Nothing is
patched: the helpers call the model's own embedding, rotary embedding, decoder layers (or
their attention / MLP sublayers), final norm and head, in order, leaving out what the
draft skips.

Where those modules live is metadata (:class:`LayerStack`), found by :func:`layer_stack`
for the Llama-style layout ``model.model.{embed_tokens, layers, norm, rotary_emb}`` +
``model.lm_head`` (Llama, Qwen2/3, Mistral, SmolLM2, ...). When every decoder layer is a
pre-norm residual block with ``input_layernorm``, ``self_attn``, ``post_attention_layernorm``
and ``mlp``, its attention and MLP sublayers can be skipped separately; otherwise only
whole layers. Approximations in drafting (e.g. a sliding-window layer attending to its
whole past) can only lower acceptance, never change output: the full model verifies.

*Units*: unit ``2*i`` is the attention sublayer of layer i, unit ``2*i + 1`` its MLP; a
skipped layer is both. A *skip set* is a frozenset of units.

Dims: T tokens fed, S cached tokens, H hidden size, V vocabulary, L decoder layers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import kv
from .chain import draft_chain  # re-exported: layer_skip and early_exit draft with it

__all__ = [
    "LayerStack",
    "layer_stack",
    "layer_units",
    "describe_skip",
    "forward_skipping",
    "head_logits",
    "additive_mask",
    "first_draft_mask",
    "score_first_drafts",
    "draft_chain",
    "relative_draft_cost",
    "linear_verify_cost",
    "expected_speedup",
    "best_depth",
    "model_fingerprint",
]

_SUBLAYERS = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")


@dataclass(frozen=True)
class LayerStack:
    """Where a decoder-only LM keeps the parts a layer-by-layer forward needs.

    Attributes:
        embed: token embedding (ids (1, T) int64 -> (1, T, H)).
        layers: the L decoder layers, in order.
        norm: final norm before the head.
        head: LM head ((1, T, H) -> (1, T, V)).
        rotary: rotary embedding module (hidden, position_ids) -> (cos, sin).
        cache_kw: the keyword decoder layers (and their attention) take the cache by.
        sublayers: attention and MLP sublayers can be run separately.
        unit_params: (2L,) parameter count of each unit (a layer's norms go with its
            sublayer; without sublayers the whole layer counts as its attention unit).
        head_params: parameters of the final norm + head.
        layer_types: per layer, the attention type whose rotary embedding it takes
            (models whose rotary module takes a ``layer_type``, e.g. Gemma 3's local and
            global frequencies), or None when all layers share one.
    """

    embed: torch.nn.Module
    layers: torch.nn.ModuleList
    norm: torch.nn.Module
    head: torch.nn.Module
    rotary: torch.nn.Module
    cache_kw: str
    sublayers: bool
    unit_params: tuple[int, ...]
    head_params: int
    layer_types: tuple[str, ...] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def layer_stack(model: torch.nn.Module) -> LayerStack:
    """The :class:`LayerStack` of a Llama-style causal LM.

    Raises:
        ValueError: the model does not have the ``model.model.{embed_tokens, layers, norm,
            rotary_emb}`` + ``lm_head`` layout (e.g. GPT-2).
    """
    inner = getattr(model, "model", None)
    parts = [getattr(inner, name, None) for name in ("embed_tokens", "layers", "norm", "rotary_emb")]
    head = getattr(model, "lm_head", None)
    if inner is None or any(p is None for p in parts) or head is None:
        raise ValueError(
            f"self-speculative drafting needs a Llama-style decoder (model.model.layers, "
            f"model.model.rotary_emb, model.lm_head); {type(model).__name__} has another layout"
        )
    embed, layers, norm, rotary = parts
    cache_kw = "cache" if "cache" in inspect.signature(layers[0].forward).parameters else "past_key_values"
    # pre-norm residual blocks only: a sandwich-norm layer (Gemma's pre/post feed-forward
    # norms) does not split into these two sublayers, so it is skipped whole
    sublayers = all(
        all(hasattr(layer, name) for name in _SUBLAYERS) and not hasattr(layer, "pre_feedforward_layernorm")
        for layer in layers
    )
    layer_types = None
    if "layer_type" in inspect.signature(rotary.forward).parameters:
        layer_types = tuple(getattr(model.config.get_text_config(), "layer_types", None) or ())
        if len(layer_types) != len(layers):
            raise ValueError(
                f"{type(model).__name__}: its rotary embedding needs each layer's type, "
                "but config.layer_types does not give one per layer"
            )
    units: list[int] = []
    for layer in layers:
        if sublayers:
            units += [_count(layer.input_layernorm, layer.self_attn), _count(layer.post_attention_layernorm, layer.mlp)]
        else:
            units += [_count(layer), 0]
    return LayerStack(
        embed, layers, norm, head, rotary, cache_kw, sublayers, tuple(units), _count(norm, head), layer_types
    )


def layer_units(layers: Sequence[int]) -> frozenset[int]:
    """The units of whole layers. Example: [1, 3] -> {2, 3, 6, 7}."""
    return frozenset(u for i in layers for u in (2 * i, 2 * i + 1))


def describe_skip(skip: frozenset[int]) -> str:
    """A readable skip set: ``L`` whole layer, ``A`` attention, ``M`` MLP, with the layer index.

    Example: {6, 7, 9} -> "L3 M4"; {} -> "-".
    """
    parts = []
    for layer in sorted({u // 2 for u in skip}):
        attn, mlp = 2 * layer in skip, 2 * layer + 1 in skip
        parts.append(f"L{layer}" if attn and mlp else f"A{layer}" if attn else f"M{layer}")
    return " ".join(parts) or "-"


def forward_skipping(
    stack: LayerStack,
    cache,
    token_ids: Sequence[int],
    positions: Sequence[int],
    skip: frozenset[int] = frozenset(),
    mask: torch.Tensor | None = None,
    exits: Sequence[int] = (),
) -> list[torch.Tensor]:
    """Embed ``token_ids`` at ``positions`` and run them through the decoder layers, leaving
    out the units in ``skip``; run layers append their keys/values to ``cache``.

    Args:
        stack: the model's :class:`LayerStack`.
        cache: the KV cache (a ``DynamicCache``) the run layers read and append to.
        token_ids: T token ids.
        positions: T position ids (the tokens' true positions in the sequence).
        skip: units to leave out (see the module docstring).
        mask: (1, 1, T, S + T) additive float mask over the keys each run layer sees after
            appending, or None (allowed only for T == 1: attend to everything cached).
        exits: layer counts e at which to return logits (after layers 0..e-1); empty =
            after all layers. Layers past the largest exit are not run.

    Returns:
        One (T, V) logits tensor per exit (final norm + head applied to the hidden states).

    Raises:
        ValueError: T > 1 without a mask, or a sublayer skipped on a model without sublayers.
    """
    if len(token_ids) > 1 and mask is None:
        raise ValueError("several tokens need an explicit attention mask")
    if not stack.sublayers and any((u ^ 1) not in skip for u in skip):
        raise ValueError("this model's layers can only be skipped whole")
    device = stack.head.weight.device
    ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    position_ids = torch.tensor([list(positions)], dtype=torch.long, device=device)
    hidden = stack.embed(ids)
    if stack.layer_types:
        rotary = {t: stack.rotary(hidden, position_ids, t) for t in dict.fromkeys(stack.layer_types)}
    else:
        shared = stack.rotary(hidden, position_ids=position_ids)
    common = dict(attention_mask=mask, position_ids=position_ids, **{stack.cache_kw: cache})
    stops = sorted(exits) or [stack.num_layers]
    out = []
    for index in range(stops[-1]):
        run_attn, run_mlp = 2 * index not in skip, 2 * index + 1 not in skip
        layer = stack.layers[index]
        common["attention_mask"] = _mask_for_layer(mask, cache, index, len(token_ids))
        common["position_embeddings"] = rotary[stack.layer_types[index]] if stack.layer_types else shared
        if run_attn and run_mlp:
            hidden = layer(hidden, use_cache=True, **common)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        else:
            if run_attn:
                attn = layer.self_attn(hidden_states=layer.input_layernorm(hidden), **common)
                hidden = hidden + (attn[0] if isinstance(attn, tuple) else attn)
            if run_mlp:
                hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        if index + 1 in stops:
            out.append(head_logits(stack, hidden))
    return out


def _mask_for_layer(mask: torch.Tensor | None, cache, index: int, fed: int) -> torch.Tensor | None:
    """``mask`` cut to the keys cache layer ``index`` hands to attention: a sliding-window
    layer (Gemma 3, Mistral) hands only its last window - 1 + ``fed`` keys, so only the
    mask's last columns apply (a drafting approximation: those rows may see a few keys
    more than the window; verification is exact)."""
    layers = getattr(cache, "layers", None)
    if mask is None or layers is None or index >= len(layers) or not getattr(layers[index], "is_sliding", False):
        return mask
    width = layers[index].sliding_window - 1 + fed
    return mask[..., -width:] if mask.shape[-1] > width else mask


def head_logits(stack: LayerStack, hidden: torch.Tensor) -> torch.Tensor:
    """Final norm + LM head: (1, T, H) -> (T, V) logits."""
    return stack.head(stack.norm(hidden))[0]


def additive_mask(visible: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor:
    """(T, S) bool "query may see key" -> (1, 1, T, S) additive mask (0 or dtype's min).

    Example: [[True, False]] -> [[[[0, min]]]].
    """
    mask = torch.zeros(visible.shape, dtype=dtype).masked_fill(~visible, torch.finfo(dtype).min)
    return mask[None, None].to(device) if device is not None else mask[None, None]


def first_draft_mask(cached: int, start: int, count: int) -> torch.Tensor:
    """Visibility for scoring the *first* draft token at ``count`` committed positions at once.

    Tokens at positions ``start .. start+count-1`` (whose exact keys are already cached at
    those indices) are fed again and appended after the ``cached`` entries. Query i sees
    exactly what a first draft token at position ``start+i`` sees while drafting: the exact
    cache of every earlier position, plus its own freshly computed entry.

    Returns:
        (count, cached + count) bool.

    Example: cached 4, start 2, count 2 ->
    [[1, 1, 0, 0, 1, 0],
     [1, 1, 1, 0, 0, 1]].
    """
    earlier = torch.arange(cached).unsqueeze(0) < (start + torch.arange(count)).unsqueeze(1)
    return torch.cat([earlier, torch.eye(count, dtype=torch.bool)], dim=1)


def score_first_drafts(
    stack: LayerStack, cache, tokens: list[int], window: int, skip: frozenset[int], exits: Sequence[int] = ()
) -> tuple[list[float], int]:
    """How often a skip-set draft's first token equals the committed next token, over the
    last ``window`` committed positions, in one forward (teacher forcing).

    The cache must hold exactly ``len(tokens) - 1`` tokens in every layer (the engine's
    state at ``propose`` time); it is rolled back to that afterwards.

    Args:
        tokens: committed tokens; position p is scored against ``tokens[p + 1]``.
        window: most positions scored (the latest ones; position 0 never).
        skip: units left out; exits: as in :func:`forward_skipping`.

    Returns:
        (agreement fraction 0-1 per exit (one entry if ``exits`` is empty), positions scored).
    """
    cached = len(tokens) - 1
    start = max(1, cached - window)
    count = cached - start
    if count < 1:
        return [0.0] * max(1, len(exits)), 0
    dtype = stack.head.weight.dtype
    mask = additive_mask(first_draft_mask(cached, start, count), dtype, stack.head.weight.device)
    truth = torch.tensor(tokens[start + 1 : cached + 1], device=stack.head.weight.device)
    try:
        all_logits = forward_skipping(stack, cache, tokens[start:cached], range(start, cached), skip, mask, exits)
    finally:
        kv.rollback(cache, cached)
    return [float((logits.argmax(-1) == truth).double().mean()) for logits in all_logits], count


def relative_draft_cost(stack: LayerStack, skip: frozenset[int], exit_layer: int | None = None) -> float:
    """Cost of one draft token in units of a full 1-token forward, estimated by the
    parameters it reads (a 1-token forward reads every weight once).

    Args:
        skip: units left out.
        exit_layer: layers past this count are not run (None = all run).

    Example: units of 1M parameters each over 5 layers (10 units) and a 2M head; skipping
    4 units -> (6 + 2) / (10 + 2) = 0.67.
    """
    stop = 2 * (stack.num_layers if exit_layer is None else exit_layer)
    run = sum(p for u, p in enumerate(stack.unit_params) if u < stop and u not in skip)
    return (run + stack.head_params) / (sum(stack.unit_params) + stack.head_params)


def linear_verify_cost(per_token: float) -> Callable[[int], float]:
    """Relative cost of an n-token verification forward: ``1 + per_token * (n - 1)``.

    Example: per_token 0.15 -> a 5-token verification costs 1.6 one-token forwards.
    """
    return lambda n: 1.0 + per_token * (n - 1)


def expected_speedup(acceptance: float, draft_cost: float, verify_cost: Callable[[int], float], depth: int) -> float:
    """Expected speedup over plain decoding of drafting ``depth`` tokens per step.

    With per-token acceptance rate a (independent tokens), a step commits
    tau = (1 - a^(depth+1)) / (1 - a) tokens and costs
    ``depth * draft_cost + verify_cost(depth + 1)`` (units: a full 1-token forward).

    Example: a 0.5, draft_cost 0.5, verify_cost(n) = 1 for every n, depth 1 ->
    tau 1.5 over cost 1.5 = 1.0.
    """
    tau = depth + 1.0 if acceptance >= 1 else (1 - acceptance ** (depth + 1)) / (1 - acceptance)
    return tau / (depth * draft_cost + verify_cost(depth + 1))


def best_depth(
    acceptance: float, draft_cost: float, verify_cost: Callable[[int], float], max_depth: int
) -> tuple[float, int]:
    """(expected speedup, depth) maximizing :func:`expected_speedup` over depths 1..max_depth.

    Example: a 0.9, draft_cost 0.1, verify_cost 1 -> deeper is better: (.., max_depth).
    """
    return max((expected_speedup(acceptance, draft_cost, verify_cost, d), d) for d in range(1, max_depth + 1))


def model_fingerprint(model: torch.nn.Module) -> str:
    """A key identifying a model's architecture and weights (for per-model caches).

    Built from the config's model type, layer count, hidden and vocabulary sizes, the dtype
    and a checksum of the first layer's weights, so two random tiny models differ.
    """
    stack = layer_stack(model)
    config = model.config
    first = next(stack.layers[0].parameters()).detach().flatten()[:4096].double().cpu()
    checksum = float((first * torch.arange(1, first.numel() + 1, dtype=torch.float64)).sum())
    dtype = str(stack.head.weight.dtype).replace("torch.", "")
    return f"{config.model_type}-L{stack.num_layers}-H{config.hidden_size}-V{config.vocab_size}-{dtype}-{checksum:.10e}"
