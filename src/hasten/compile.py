"""Compiled verification: the target's forward under ``torch.compile``, eager when that fails.

    compiled = hasten.compile_model(model)            # compiles and warms up now
    print(compiled.compile_seconds)                   # compile time, apart from generation
    hasten.generate(compiled, ids, method="trie")     # same tokens as hasten.generate(model, ...)

``torch.compile`` is applied to a function that calls the model, never to the model
object itself, so the user's module is not changed and can be used eagerly alongside.
Warm-up runs one throw-away decode per verification size in ``CompileConfig.buckets``
(rows = root + draft nodes), so the graphs the decode loop uses are compiled before any
generation is timed; sizes outside the buckets (the prefill, a wider tree) run through
the same compiled function with dynamic shapes, or eagerly (``eager_above``).

Fallback: if compiling or running the compiled forward raises, a
:class:`CompileFallbackWarning` is issued once, the KV cache is rolled back to its length
before the failed call, and this and every later forward run eagerly. Outputs are the
same either way: compilation changes how the forward runs, not what the engine accepts
(bitwise equality of compiled and eager logits is not guaranteed; greedy output can
differ only at exact near-ties, as between any two kernels).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import kv

__all__ = ["CompileConfig", "CompiledModel", "CompileFallbackWarning", "compile_model"]


class CompileFallbackWarning(RuntimeWarning):
    """``torch.compile`` failed; the forward runs eagerly from now on."""


@dataclass(frozen=True)
class CompileConfig:
    """How the target forward is compiled.

    Attributes:
        backend: ``torch.compile`` backend (``"inductor"``; ``"eager"`` traces without
            code generation; a callable backend for tests).
        mode: ``torch.compile`` mode (None = default; ``"max-autotune-no-cudagraphs"``
            compiles longer for faster kernels).
        dynamic: compile with symbolic sequence lengths (the KV cache grows every step,
            so static shapes would recompile each step).
        buckets: verification sizes (rows per forward) warmed up by
            :func:`compile_model`, ascending.
        eager_above: forwards with more rows than this run eagerly (the prefill); None =
            everything compiled.
        warmup_context: cached tokens the warm-up decodes after (tokens).

    Raises:
        ValueError: empty or unsorted buckets, a bucket < 1, eager_above < max bucket.
    """

    backend: Any = "inductor"
    mode: str | None = None
    dynamic: bool = True
    buckets: tuple[int, ...] = (1, 2, 4, 8, 16)
    eager_above: int | None = 64
    warmup_context: int = 32

    def __post_init__(self) -> None:
        b = self.buckets
        if not b or list(b) != sorted(set(b)) or b[0] < 1:
            raise ValueError(f"buckets must be ascending sizes >= 1, got {b}")
        if self.eager_above is not None and self.eager_above < b[-1]:
            raise ValueError(f"eager_above ({self.eager_above}) must be >= the largest bucket ({b[-1]})")
        if self.warmup_context < 1:
            raise ValueError("warmup_context must be >= 1")


class CompiledModel:
    """A target model plus its compiled forward; pass it to :func:`hasten.generate` in
    place of the model. Attributes: ``model`` (the unchanged module), ``config``,
    ``compile_seconds`` (seconds spent in warm-up forwards that compiled),
    ``fallback_reason`` (None while compiled; the error text after a fallback)."""

    def __init__(self, model: torch.nn.Module, config: CompileConfig = CompileConfig()):
        self.model, self.config = model, config
        self.compile_seconds = 0.0
        self.fallback_reason: str | None = None
        self._compiled: Callable[..., Any] | None = None
        try:
            self._compiled = torch.compile(
                self._call_model, backend=config.backend, mode=config.mode, dynamic=config.dynamic
            )
        except Exception as err:  # e.g. an unsupported backend name
            self._fall_back(err)

    def _call_model(self, **kwargs: Any):
        return self.model(**kwargs)

    def _fall_back(self, err: BaseException) -> None:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        self.fallback_reason = f"{type(err).__name__}: {text[:300]}"
        self._compiled = None
        warnings.warn(
            f"torch.compile of the target forward failed ({self.fallback_reason}); "
            "running eagerly (outputs are unchanged)",
            CompileFallbackWarning,
            stacklevel=3,
        )

    @property
    def compiled(self) -> bool:
        """Whether forwards currently run through the compiled function."""
        return self._compiled is not None

    def forward(self, cache, **kwargs: Any):
        """One model forward with ``cache`` (under the model's cache keyword); compiled
        when possible. On a compile/run failure the cache is rolled back to its length
        before the call and the forward is redone eagerly (see the module docstring)."""
        rows = kwargs["input_ids"].shape[-1]
        kwargs[kv.cache_kwarg(self.model)] = cache
        eager = self.config.eager_above is not None and rows > self.config.eager_above
        if self._compiled is None or eager:
            return self.model(**kwargs)
        before = kv.cache_length(cache)
        try:
            return self._compiled(**kwargs)
        except Exception as err:
            kv.rollback(cache, before)
            self._fall_back(err)
            return self.model(**kwargs)

    def warm_up(self) -> float:
        """Run, twice each, the forwards the decode loop makes at every bucket size after
        ``warmup_context`` cached tokens (1 row: a plain step, with and without
        ``logits_to_keep``; more rows: a chain and a draft tree), so compilation happens
        now. Returns the seconds it took (added to ``compile_seconds``)."""
        import inspect

        start = time.perf_counter()
        device = next(self.model.parameters()).device
        vocab = self.model.get_output_embeddings().weight.shape[0]
        keeps = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        gen = torch.Generator().manual_seed(0)
        with torch.inference_mode():
            for rows in self.config.buckets:
                variants = (
                    ([{"logits_to_keep": 1}] if keeps else []) + [{}]
                    if rows == 1
                    else [{}, self._tree_inputs(rows, device)]
                )
                for extra in variants * 2:  # the second round checks the graphs are reused
                    cache = kv.new_cache(self.model)
                    context = torch.randint(vocab, (1, self.config.warmup_context), generator=gen).to(device)
                    self.forward(cache, input_ids=context, use_cache=True)
                    step = torch.randint(vocab, (1, rows), generator=gen).to(device)
                    self.forward(cache, input_ids=step, use_cache=True, **extra)
                if not self.compiled:
                    break
        seconds = time.perf_counter() - start
        self.compile_seconds += seconds
        return seconds

    def _tree_inputs(self, rows: int, device) -> dict[str, torch.Tensor]:
        """Positions (1, rows) and an all-visible (1, 1, rows, context + rows) mask of the
        engine's tree-verification call, for warm-up."""
        start = self.config.warmup_context
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(1, 1, rows, start + rows, dtype=dtype, device=device)
        return {"position_ids": torch.arange(start, start + rows, device=device)[None], "attention_mask": mask}


def compile_model(model: torch.nn.Module, config: CompileConfig | None = None, warm_up: bool = True) -> CompiledModel:
    """Compile ``model``'s forward for the engine's verification sizes (see module docstring).

    Args:
        model: a causal LM as for :func:`hasten.generate`; not modified.
        config: :class:`CompileConfig` (None = defaults: inductor, dynamic shapes,
            buckets 1-16).
        warm_up: compile now (``compile_seconds`` holds the time); False compiles lazily
            on first use, inside whatever is being timed.

    Returns:
        a :class:`CompiledModel` to pass to :func:`hasten.generate` instead of ``model``.
        Never raises for a compile failure: it warns (:class:`CompileFallbackWarning`)
        and runs eagerly.
    """
    compiled = CompiledModel(model, config or CompileConfig())
    if warm_up:
        compiled.warm_up()
    return compiled
