"""The drafter protocol and the method registry.

A *drafter* proposes candidate continuations (a :class:`~hasten.tree.DraftTree`) from the
committed tokens; the engine verifies them with one target forward and tells the drafter
how many were accepted. Each draft source lives in its own module with a frozen config
dataclass, one :class:`Drafter` subclass and one :func:`register` line.

Lifecycle per :func:`hasten.generate` call: ``begin(request)`` (reset all per-request state),
then repeatedly ``propose(tokens, max_depth)`` / ``on_accept(step)``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from ..registry import Registry, UnknownNameError
from ..sampling import SamplingParams
from ..tree import DraftTree

__all__ = [
    "Drafter",
    "DraftRequest",
    "VerifiedStep",
    "MethodSpec",
    "register",
    "get_method",
    "list_methods",
    "build_drafter",
    "UnknownMethodError",
    "METHODS",
]


class UnknownMethodError(UnknownNameError):
    """A method name that no drafter registered."""


@dataclass
class DraftRequest:
    """What a drafter may read about the request it drafts for.

    Attributes:
        prompt_ids: the prompt token ids.
        target: the target model (self-speculative drafters run parts of it).
        params: the sampling parameters plain decoding uses.
        generator: RNG for draft sampling, separate from the target's.
        vocab_size: the target's logits width V.
        target_cache: the engine's KV cache of the target. At ``propose`` time it holds
            exactly the committed tokens but the last (``len(tokens) - 1``); a
            self-speculative drafter may append to it while drafting (e.g. the layers it
            runs), and the engine rolls every layer back to that length after ``propose``.
    """

    prompt_ids: list[int]
    target: torch.nn.Module
    params: SamplingParams
    generator: torch.Generator
    vocab_size: int
    target_cache: Any = None


class Drafter(ABC):
    """One draft source. Subclasses set ``name`` and take their config in ``__init__``.

    ``observes_plain_steps``: also call :meth:`on_accept` after steps that verified no
    draft (the drafter proposed nothing, or the draft budget cut it away), so a drafter
    that learns from the target's scores keeps learning while it is not drafting.

    ``needs_torch_target``: the drafter runs parts of the target model itself (layers,
    KV cache), so it needs a transformers target; the engine refuses it on another
    backend (e.g. llama.cpp) with a clear error.

    ``proposes_distributions``: when sampling, the drafter samples its tokens and its
    drafts carry ``draft_probs``; the engine verifies them with the speculative sampling
    rule (output has plain sampling's distribution). Drafts of other drafters are
    verified with position-keyed draws (:class:`hasten.sampling.PositionDraws`), so
    their sampled output is token-identical to plain sampling with the same seed (any
    ``draft_probs`` they attach are then not needed and ignored).
    """

    name: ClassVar[str] = ""
    observes_plain_steps: ClassVar[bool] = False
    needs_torch_target: ClassVar[bool] = False
    proposes_distributions: ClassVar[bool] = False

    def begin(self, request: DraftRequest) -> None:
        """Start a new request: forget everything request-specific."""
        self.request = request

    @abstractmethod
    def propose(self, tokens: list[int], max_depth: int) -> DraftTree | None:
        """Candidates to follow ``tokens`` (prompt + generated, the last one is the root).

        Args:
            tokens: committed token ids.
            max_depth: the deepest node allowed (>= 1); the engine truncates deeper ones.

        Returns:
            A draft tree, or None to let the engine take a plain decoding step.
        """

    def on_accept(self, step: "VerifiedStep") -> None:  # noqa: B027  (optional hook, default: ignore)
        """Feedback after each verification of a non-empty draft, and of an empty one too
        when ``observes_plain_steps`` (see :class:`VerifiedStep`)."""

    def stats(self) -> dict[str, Any]:
        """Drafter-specific figures for ``GenerationStats.drafter`` (JSON-serializable)."""
        return {}


@dataclass(frozen=True)
class VerifiedStep:
    """What one verification step produced, for drafters that learn from it.

    Attributes:
        tokens: the committed sequence after this step (prompt + generated).
        draft: the verified draft tree (N nodes).
        accepted: accepted draft node indices along the path, in order.
        next_token: the bonus / recovered token appended after the path.
        target_tokens: (N+1,) the target's token at every row (argmax when greedy, one
            draw per row when sampling); row 0 follows the root, row i+1 follows node i.
            None when the speculative sampling rule decided (draft chains with probs).
        scores: (N+1, V) float processed target logits for every row (Jacobi iterates,
            top-k candidates for token recycling). Do not modify.
        root_position: index in ``tokens`` of the step's root (the last token before this
            step's commits; row 0 follows it). None when not given.
    """

    tokens: list[int]
    draft: DraftTree
    accepted: list[int]
    next_token: int
    target_tokens: list[int] | None
    scores: torch.Tensor
    root_position: int | None = None

    @property
    def num_accepted(self) -> int:
        return len(self.accepted)


@dataclass(frozen=True)
class MethodSpec:
    """A registered draft method: its name, config type, drafter factory and capabilities.

    Capability flags (callers read these instead of sniffing config field names or
    method names):

    ``needs_draft_model``: the config takes a separate draft LM (``draft_model`` field);
    bench and CLI pass ``--draft-model`` to it.
    ``uses_skip_cache``: the config has a ``skip_cache`` path for searched skip sets;
    ``hasten bench`` points it at the run's output folder.
    ``needs_torch_target`` / ``proposes_distributions``: read from the drafter class
    (see :class:`Drafter`).
    ``model_free``: needs neither a draft model nor the target's torch internals, so it
    runs on any backend (e.g. llama.cpp).
    """

    name: str
    config_cls: type
    drafter_cls: Callable[..., Drafter]
    summary: str
    needs_draft_model: bool = False
    uses_skip_cache: bool = False

    @property
    def needs_torch_target(self) -> bool:
        return bool(getattr(self.drafter_cls, "needs_torch_target", False))

    @property
    def proposes_distributions(self) -> bool:
        return bool(getattr(self.drafter_cls, "proposes_distributions", False))

    @property
    def model_free(self) -> bool:
        return not (self.needs_draft_model or self.needs_torch_target)


class _MethodRegistry(Registry[MethodSpec]):
    """Drafter registry: a name taken by the same drafter class re-registers silently."""

    def register(
        self, name: str, entry: MethodSpec, *, key_type: type | None = None, replace: bool = False
    ) -> MethodSpec:
        old = self._entries.get(name)
        if old is not None and old.drafter_cls is entry.drafter_cls:
            replace = True
        return super().register(name, entry, key_type=key_type, replace=replace)


METHODS: Registry[MethodSpec] = _MethodRegistry("method", ("hasten.drafters.*",), error=UnknownMethodError)
"""Every draft method: name -> :class:`MethodSpec` (also found by config type)."""


def register(spec: MethodSpec) -> MethodSpec:
    """Make ``spec.name`` usable as ``hasten.generate(method=...)``.

    Raises:
        ValueError: the name is taken by a different drafter.
    """
    return METHODS.register(spec.name, spec, key_type=spec.config_cls)


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    return list(METHODS.names())


def get_method(name: str) -> MethodSpec:
    """The spec registered as ``name``.

    Raises:
        UnknownMethodError: no such method; the message lists the known ones.
    """
    return METHODS.get(name)


def build_drafter(method: str | Drafter | Any, **options: Any) -> Drafter:
    """A drafter from a method name (+ config field values), a config instance, or a drafter.

    Raises:
        UnknownMethodError: an unknown name.
        TypeError: options that are not fields of the method's config, or an object that
            is neither a name, a registered config, nor a :class:`Drafter`.
    """
    if isinstance(method, Drafter):
        if options:
            raise TypeError("options cannot be applied to a drafter instance")
        return method
    if isinstance(method, str):
        spec = get_method(method)
        fields = {f.name for f in dataclasses.fields(spec.config_cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise TypeError(f"{method}: unknown option(s) {unknown}; valid: {sorted(fields)}")
        return spec.drafter_cls(spec.config_cls(**options))
    name = METHODS.name_of(type(method))
    if name is not None:
        spec = METHODS.get(name)
        return spec.drafter_cls(dataclasses.replace(method, **options))
    raise TypeError(f"method must be a name, a registered config or a Drafter, got {type(method).__name__}")
