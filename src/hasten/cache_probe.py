"""Can hasten's KV-cache operations run this model exactly? A structural and a behavioural check.

Speculative decoding rolls the cache back past rejected draft tokens and compacts it to
the accepted tree path (:mod:`hasten.kv`). That is exact only for caches whose whole state
is per-token attention keys/values. Recurrent and hybrid models (Mamba, Mamba2, Jamba,
Zamba2, Bamba, Falcon-H1, LFM2, Qwen3-Next, RecurrentGemma, ...) also carry a recurrent
(SSM), convolution or linear-attention state that summarizes every token seen; trimming
keys/values leaves that state holding the rejected tokens, and the output would silently
differ from plain decoding. Newer transformers releases mark such layers as croppable,
so a capability flag is not enough: :func:`check_cache` refuses them by what the layers
hold, then runs a probe on the model itself:

1. reference: a fresh cache, one forward over ``[a, c, d]``;
2. incremental: a fresh cache, forward ``[a, b]``, roll back to 1 token, forward ``[c]``,
   then ``[d]``; each step's logits must equal the reference row at that position.

Step 2 without the rollback is what plain decoding relies on (incremental decoding
through :func:`hasten.kv.new_cache` equals a full forward); with it, what every
speculative method relies on. A mismatch means the model (or a transformers release)
handles the cache differently from what hasten assumes, and generation is refused
instead of producing different tokens.

The probe costs four small forwards; its verdict is remembered per model object and cache
kind (a weak reference: nothing is kept alive or attached to the model).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["UnsupportedCacheError", "check_cache", "probe_rollback", "recurrent_layers"]

# Probe verdicts: model -> {(static, speculative): error message or None}. A memo of a
# deterministic property of the model object, not configuration.
_VERDICTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class UnsupportedCacheError(ValueError):
    """The model's cache cannot be rolled back / compacted exactly by hasten."""


def recurrent_layers(cache: Any) -> list[str]:
    """Names of the cache layers that hold recurrent, convolution or linear-attention state
    (anything besides per-token keys/values), e.g. ``["0: LinearAttentionLayer"]``."""
    found = []
    for index, layer in enumerate(getattr(cache, "layers", [])):
        stateful = any(hasattr(layer, name) for name in ("conv_states", "recurrent_states", "ssm_states"))
        if stateful or any("LinearAttention" in cls.__name__ for cls in type(layer).__mro__):
            found.append(f"{index}: {type(layer).__name__}")
    return found


def _tolerance(logits: torch.Tensor) -> float:
    eps = torch.finfo(logits.dtype).eps if logits.is_floating_point() else 0.0
    return max(1e-4, 64 * eps) * (1.0 + float(logits.abs().max()))


def probe_rollback(target, static: bool = False, speculative: bool = True) -> str | None:
    """Run the probe of the module docstring on ``target`` (the engine's view of a
    transformers model: ``new_cache``, ``forward``, ``rollback``, ``vocab_size``).

    Returns:
        None when incremental decoding (and, if ``speculative``, rollback) reproduces a
        fresh forward within floating-point tolerance (``max(1e-4, 64 eps) * (1 + max|logit|)``);
        otherwise a sentence saying what differed.
    """
    vocab = target.vocab_size
    a, b, c, d = (t % vocab for t in (vocab // 2 + 1, vocab // 3 + 2, vocab // 5 + 3, vocab // 7 + 4))
    if b == c:
        c = (c + 1) % vocab
    forwards, seconds = target.forwards, target.forward_seconds
    with torch.inference_mode():
        return _probe(target, (a, b, c, d), static, speculative, forwards, seconds)


def _probe(target, tokens, static, speculative, forwards, seconds) -> str | None:
    a, b, c, d = tokens
    try:
        reference = target.forward(target.new_cache(static), [a, c, d]).float()
        cache = target.new_cache(static)
        if speculative:
            target.forward(cache, [a, b], last_only=True)
            target.rollback(cache, 1)
            if target.cache_length(cache) != 1:
                return f"after a rollback to 1 token the cache reports {target.cache_length(cache)} tokens"
        else:
            target.forward(cache, [a], last_only=True)
        rows = [
            target.forward(cache, [c], last_only=True)[0],
            target.forward(cache, [d], last_only=True)[0],
        ]
    finally:
        target.forwards, target.forward_seconds = forwards, seconds
    for row, expected in zip(rows, reference[1:]):
        diff = float((row.float() - expected).abs().max())
        if diff > _tolerance(expected):
            what = "rolling the cache back and decoding on" if speculative else "decoding token by token"
            return f"{what} gives logits that differ from a fresh forward by {diff:.3g}"
    return None


def check_cache(target, static: bool = False, speculative: bool = True) -> None:
    """Refuse a transformers target whose cache hasten cannot run exactly (see the module docstring).

    Args:
        target: the engine's target (``backend == "transformers"``; other backends manage
            their own cache and are not checked).
        static: the cache kind the run will use (``kv_cache="static"``).
        speculative: the run rolls the cache back (any method) or only appends (plain decoding).

    Raises:
        UnsupportedCacheError: the cache has recurrent / convolution / linear-attention
            layers, or the probe's logits differ from a fresh forward.
    """
    if getattr(target, "backend", "transformers") != "transformers":
        return
    model = target.model
    name = type(model).__name__
    from transformers import DynamicCache

    stateful = recurrent_layers(DynamicCache(config=model.config))  # before kv.new_cache's own refusals
    if stateful:
        raise UnsupportedCacheError(
            f"{name} keeps recurrent / convolution / linear-attention state in its cache (layers "
            f"{', '.join(stateful[:4])}{', ...' if len(stateful) > 4 else ''}), which hasten cannot roll back "
            "exactly; hasten supports attention-only models. Use model.generate for this model."
        )
    try:
        verdicts = _VERDICTS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: probe every time
        verdicts = {}
    key = (static, speculative)
    if key not in verdicts:
        verdicts[key] = probe_rollback(target, static, speculative)
    if verdicts[key] is not None:
        raise UnsupportedCacheError(
            f"{name}: {verdicts[key]}; this model's cache (or this transformers version) does not behave as "
            "hasten's KV-cache operations assume, so generation is refused rather than risk other tokens. "
            "Use model.generate for this model."
        )
