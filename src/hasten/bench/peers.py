"""Contenders: hasten's own decoding paths and the peers users would run instead.

A *contender* turns prompt token ids into generated token ids and reports its counters;
the runner times each call with the same clock and counts tokens the same way for all.

Names accepted by ``--methods``:
    ``ar``: hasten plain decoding (``hasten.generate(method=None)``), the baseline.
    any name in :func:`hasten.list_methods`: hasten with that draft method.
    ``hf_greedy``: ``transformers`` ``model.generate`` (greedy, or sampling if asked).
    ``hf_prompt_lookup``: ``model.generate(prompt_lookup_num_tokens=n)``.
    ``hf_assisted``: ``model.generate(assistant_model=draft)``; needs ``--draft-model``.
    ``llamacpp``, ``llamacpp_prompt_lookup``: llama.cpp through the optional
        ``llama-cpp-python`` package on the model's GGUF file (plain, and with its
        ``LlamaPromptLookupDecoding`` draft). Skipped with a note when not installed.
    ``NAME@llamacpp`` (e.g. ``ar@llamacpp``, ``suffix@llamacpp``): hasten's decode loop
        and drafter on llama.cpp kernels over the GGUF file (:mod:`hasten.backends.llamacpp`;
        model-free drafters only), audited against ``ar@llamacpp``.
    ``NAME@DTYPE`` (e.g. ``ar@bfloat16``, ``trie@bf16``, ``hf_greedy@bf16``): the same
        contender on a copy of the target loaded in another dtype, in the same run. Its
        exactness is audited against ``ar@DTYPE`` (plain decoding in that dtype, added when
        missing): lossless means identical to plain decoding of the same model in the
        same dtype. Speedups stay relative to ``ar`` in the run's main dtype.

Target forwards are counted and timed by :class:`ForwardTimer`, a pair of forward hooks
on the target module that fire only for that module (a ``self:k`` draft shares the
target's hook tables) and are removed after each call; a compiled hasten target reports
the engine's own forward timer instead.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..benchcore import Contender as ContenderName
from ..sampling import SamplingParams

__all__ = [
    "LLAMACPP_VARIANTS",
    "parse_contender",
    "split_variant",
    "baseline_of",
    "Request",
    "Outcome",
    "Contender",
    "ForwardTimer",
    "HastenContender",
    "HFContender",
    "LlamaCppContender",
    "PeerContext",
    "PEERS",
    "check_methods",
    "build_contenders",
    "gguf_precision",
]

Clock = Callable[[], float]


@dataclass(frozen=True)
class Request:
    """What every contender is asked for one generation.

    Attributes:
        max_new_tokens: most tokens generated (tokens).
        sampling: greedy by default; see :class:`~hasten.sampling.SamplingParams`.
        seed: sampling seed (None = random).
        eos_token_ids: token ids that end generation (kept in the output), the same for all.
    """

    max_new_tokens: int
    sampling: SamplingParams = SamplingParams()
    seed: int | None = 0
    eos_token_ids: tuple[int, ...] = ()


@dataclass
class Outcome:
    """One generation: the new token ids and whatever counters the contender has
    (None = not available). ``forward_*`` count target forwards, prefill included."""

    new_ids: list[int]
    forward_passes: int | None = None
    forward_seconds: float | None = None
    prefill_seconds: float | None = None
    decode_seconds: float | None = None
    accepted: list[int] | None = None
    drafted: list[int] | None = None
    finish_reason: str | None = None
    drafter: dict[str, Any] = field(default_factory=dict)
    prefill_tokens: int = 1  # tokens the prefill forward produced (0 when the first step already drafts)
    steps: int | None = None  # verification steps; None = forward_passes - 1 (one prefill forward)


class Contender(ABC):
    """A decoding path under test. Attributes: ``name`` (as in ``--methods``), ``engine``
    ("hasten", "transformers 5.24.0", ...), ``precision`` ("float32", "Q4_1", ...)."""

    name: str
    engine: str
    precision: str
    uses_target: bool = True  # runs the same torch module as the baseline (oracle applies)
    sampled_exact: bool = False  # when sampling, token-identical to its baseline for the same seed

    @abstractmethod
    def generate(self, prompt_ids: list[int], request: Request) -> Outcome:
        """Generate after ``prompt_ids``; raises whatever the underlying library raises."""

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "precision": self.precision,
            "uses_target": self.uses_target,
            "sampled_exact": self.sampled_exact,
        }


class ForwardTimer:
    """Counts and times forwards of one module while active (``with timer: ...``).

    Attributes: ``calls`` (forwards), ``seconds`` (inside them, by ``clock``).
    """

    def __init__(self, module: torch.nn.Module, clock: Clock):
        self.module, self.clock = module, clock
        self.calls, self.seconds = 0, 0.0
        self._start: float | None = None
        self._handles: list = []

    def _pre(self, module, args) -> None:
        if module is self.module:
            self._start = self.clock()

    def _post(self, module, args, output) -> None:
        if module is self.module and self._start is not None:
            self.seconds += self.clock() - self._start
            self.calls += 1
            self._start = None

    def __enter__(self) -> "ForwardTimer":
        self.calls, self.seconds, self._start = 0, 0.0, None
        self._handles = [
            self.module.register_forward_pre_hook(self._pre),
            self.module.register_forward_hook(self._post),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _dtype_name(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).dtype).replace("torch.", "")


class HastenContender(Contender):
    """``hasten.generate`` with ``method`` (None = plain decoding, reported as ``ar``) on
    ``model`` (a module, or a :class:`hasten.CompiledModel`: precision then reads
    "float32, compiled"). Target forwards are timed by a :class:`ForwardTimer` on the
    runner's clock; a compiled forward cannot take hooks without recompiling, so then the
    engine's own forward timer is used."""

    engine = "hasten"

    def __init__(self, name: str, model, method: str | None, clock: Clock, options: dict[str, Any] | None = None):
        from ..compile import CompiledModel
        from ..drafters import get_method
        from ..targets import is_backend_model

        self.name, self.model, self.method = name, model, method
        self.options = dict(options or {})
        # plain decoding and draft-free methods draw by position (hasten.sampling.PositionDraws)
        self.sampled_exact = method is None or not get_method(method).proposes_distributions
        if is_backend_model(model):  # a backend model: llama.cpp kernels on a GGUF file
            self.engine, self.uses_target = f"hasten on {model.backend}", False
            self.precision, self.timer = gguf_precision(model.path), None
            return
        compiled = isinstance(model, CompiledModel)
        self.precision = _dtype_name(model.model if compiled else model) + (", compiled" if compiled else "")
        self.timer = None if compiled else ForwardTimer(model, clock)

    def generate(self, prompt_ids: list[int], request: Request) -> Outcome:
        import hasten

        s = request.sampling
        with self.timer or contextlib.nullcontext():
            result = hasten.generate(
                self.model,
                prompt_ids,
                method=self.method,
                max_new_tokens=request.max_new_tokens,
                do_sample=s.do_sample,
                temperature=s.temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                repetition_penalty=s.repetition_penalty,
                eos_token_id=list(request.eos_token_ids),
                seed=request.seed,
                method_options=self.options,
            )
        st = result.stats
        forward_seconds = st.forward_seconds
        if self.timer is not None:
            # a self-speculative drafter calling the whole target is timed by the hooks too;
            # then the forward time cannot be attributed and is left out
            forward_seconds = self.timer.seconds if self.timer.calls == st.forward_passes else None
        return Outcome(
            result.sequences[0, len(prompt_ids) :].tolist(),
            st.forward_passes,
            forward_seconds,
            st.prefill_seconds,
            st.decode_seconds,
            list(st.accepted),
            list(st.drafted),
            st.finish_reason,
            dict(st.drafter),
            prefill_tokens=st.new_tokens - sum(st.committed),
        )


class HFContender(Contender):
    """``model.generate`` of transformers with extra keyword arguments (prompt lookup,
    assistant model)."""

    def __init__(self, name: str, model: torch.nn.Module, clock: Clock, extra: dict[str, Any] | None = None):
        import transformers

        self.name, self.model, self.extra = name, model, dict(extra or {})
        self.engine = f"transformers {transformers.__version__}"
        self.precision = _dtype_name(model)
        self.timer = ForwardTimer(model, clock)

    def generate(self, prompt_ids: list[int], request: Request) -> Outcome:
        s = request.sampling
        kwargs: dict[str, Any] = {"do_sample": not s.greedy, "repetition_penalty": s.repetition_penalty}
        if not s.greedy:
            kwargs.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
            if request.seed is not None:
                torch.manual_seed(request.seed)  # transformers samples from torch's global RNG
        eos = list(request.eos_token_ids)
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=next(self.model.parameters()).device)
        with self.timer, torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.max_new_tokens,
                eos_token_id=eos,
                pad_token_id=eos[0] if eos else 0,
                **kwargs,
                **self.extra,
            )
        new = out[0, len(prompt_ids) :].tolist()
        reason = "eos" if new and new[-1] in request.eos_token_ids else "max_new_tokens"
        if self.extra:  # assisted decoding: its first forward is the prefill *and* verifies candidates
            return Outcome(
                new,
                self.timer.calls,
                self.timer.seconds,
                finish_reason=reason,
                prefill_tokens=0,
                steps=self.timer.calls,
            )
        return Outcome(new, self.timer.calls, self.timer.seconds, finish_reason=reason)


def gguf_precision(path: str | Path) -> str:
    """Quantization named in a GGUF file name.

    Example: "SmolLM2-135M-Instruct.Q4_1.gguf" -> "Q4_1"; "model.gguf" -> "gguf".
    """
    match = re.search(r"[.\-_](I?Q\d[\w]*|F16|F32|BF16)\.gguf$", Path(path).name, re.IGNORECASE)
    return match.group(1).upper() if match else "gguf"


class LlamaCppContender(Contender):
    """llama.cpp via ``llama-cpp-python``: ``Llama.generate`` on a GGUF file, plain or
    with ``LlamaPromptLookupDecoding`` as its draft model. The KV cache is reset before
    every call, so no prompt prefix is reused across calls."""

    uses_target = False

    def __init__(
        self,
        name: str,
        gguf_path: str | Path,
        threads: int,
        context_length: int,
        prompt_lookup_tokens: int | None = None,
        seed: int | None = 0,
    ):
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        draft = (
            None if prompt_lookup_tokens is None else LlamaPromptLookupDecoding(num_pred_tokens=prompt_lookup_tokens)
        )
        self.name = name
        self.engine = f"llama-cpp-python {llama_cpp.__version__}"
        self.precision = gguf_precision(gguf_path)
        self.llm = Llama(
            model_path=str(gguf_path),
            n_ctx=context_length,
            n_threads=threads,
            n_threads_batch=threads,
            seed=0 if seed is None else seed,
            draft_model=draft,
            # with a draft model llama-cpp-python keeps logits for every position but
            # sizes that buffer by logits_all: without it prompts over n_batch fail
            logits_all=draft is not None,
            verbose=False,
        )

    def generate(self, prompt_ids: list[int], request: Request) -> Outcome:
        s = request.sampling
        options = {"temp": 0.0} if s.greedy else {"temp": s.temperature, "top_k": s.top_k, "top_p": s.top_p}
        self.llm.reset()
        new: list[int] = []
        reason = "max_new_tokens"
        for token in self.llm.generate(
            prompt_ids, min_p=0.0, typical_p=1.0, repeat_penalty=s.repetition_penalty, **options
        ):
            new.append(int(token))
            if token in request.eos_token_ids:
                reason = "eos"
                break
            if len(new) >= request.max_new_tokens:
                break
        return Outcome(new, finish_reason=reason)


@dataclass
class PeerContext:
    """What peer factories may use.

    Attributes:
        model: the target torch model; model_name: as given to ``--model``.
        clock: the runner's clock. draft: the draft module for ``hf_assisted`` (or None).
        prompt_lookup_tokens: ``prompt_lookup_num_tokens`` / ``num_pred_tokens`` (tokens).
        gguf: GGUF file for llama.cpp (None = the built-in model's own file).
        threads: llama.cpp threads. seed: sampling seed. compiled: the target with a
            compiled forward, used by hasten contenders (``--compile``).
    """

    model: torch.nn.Module
    model_name: str
    clock: Clock
    draft: torch.nn.Module | None = None
    prompt_lookup_tokens: int = 10
    gguf: str | None = None
    threads: int = 1
    seed: int | None = 0
    compiled: Any = None  # a hasten.CompiledModel of ``model`` for hasten contenders (None = eager)


def _llamacpp_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return (
            'llama-cpp-python is not installed; to compare with llama.cpp: CMAKE_ARGS="-DGGML_NATIVE=OFF" '
            "pip install llama-cpp-python (see docs/BENCH.md)"
        )
    return None


def peer_gguf_path(ctx: PeerContext) -> Path:
    from ..models import BUILTIN_MODELS

    if ctx.gguf is not None:
        return Path(ctx.gguf)
    spec = BUILTIN_MODELS.get(ctx.model_name)
    found = importlib.util.find_spec(spec.package) if spec is not None else None
    if found is None or found.origin is None:
        raise ValueError(f"llama.cpp peers need a GGUF file: pass --gguf PATH for model {ctx.model_name!r}")
    return Path(found.origin).parent / spec.gguf_file


def context_length(model: torch.nn.Module) -> int:
    return int(getattr(model.config, "max_position_embeddings", 0) or 2048)


def _assistant(ctx: PeerContext) -> torch.nn.Module:
    if ctx.draft is None:
        raise ValueError("hf_assisted needs --draft-model (a model name/path or self:K)")
    if ctx.draft is not ctx.model and getattr(ctx.draft, "generation_config", None) is getattr(
        ctx.model, "generation_config", None
    ):
        ctx.draft.generation_config = copy.deepcopy(ctx.model.generation_config)  # transformers edits it
    return ctx.draft


@dataclass(frozen=True)
class PeerSpec:
    """A peer: its summary, factory, and a check returning why it cannot run (None = ok)."""

    summary: str
    build: Callable[[str, PeerContext], Contender]
    missing: Callable[[], str | None] = lambda: None
    needs_draft: bool = False
    uses_gguf: bool = False


PEERS: dict[str, PeerSpec] = {
    "hf_greedy": PeerSpec("transformers model.generate", lambda name, c: HFContender(name, c.model, c.clock)),
    "hf_prompt_lookup": PeerSpec(
        "transformers prompt lookup (prompt_lookup_num_tokens)",
        lambda name, c: HFContender(name, c.model, c.clock, {"prompt_lookup_num_tokens": c.prompt_lookup_tokens}),
    ),
    "hf_assisted": PeerSpec(
        "transformers assisted generation (assistant_model)",
        lambda name, c: HFContender(name, c.model, c.clock, {"assistant_model": _assistant(c)}),
        needs_draft=True,
    ),
    "llamacpp": PeerSpec(
        "llama.cpp (llama-cpp-python) on the GGUF file",
        lambda name, c: LlamaCppContender(name, peer_gguf_path(c), c.threads, context_length(c.model), seed=c.seed),
        lambda: _llamacpp_missing(),
        uses_gguf=True,
    ),
    "llamacpp_prompt_lookup": PeerSpec(
        "llama.cpp with LlamaPromptLookupDecoding",
        lambda name, c: LlamaCppContender(
            name, peer_gguf_path(c), c.threads, context_length(c.model), c.prompt_lookup_tokens, c.seed
        ),
        lambda: _llamacpp_missing(),
        uses_gguf=True,
    ),
}


def _takes_draft(name: str) -> bool:
    """Whether hasten method ``name`` takes a draft model (its ``needs_draft_model`` flag)."""
    from ..drafters import get_method

    return name != "ar" and get_method(name).needs_draft_model


LLAMACPP_VARIANTS = ("llamacpp", "llama.cpp", "gguf")


def _canonical_variant(variant: str) -> str:
    """``"bf16"`` -> ``"bfloat16"``; ``"gguf"`` / ``"llama.cpp"`` -> ``"llamacpp"``.

    Raises:
        ValueError: an unknown dtype.
    """
    from ..models import resolve_dtype

    if variant.lower() in LLAMACPP_VARIANTS:
        return "llamacpp"
    return str(resolve_dtype(variant)).replace("torch.", "")


def parse_contender(name: str) -> ContenderName:
    """``"trie@bf16"`` -> ``ContenderName("trie", "bfloat16")`` (a :class:`hasten.benchcore.Contender`);
    ``"suffix@llamacpp"``: hasten's loop on llama.cpp kernels (:mod:`hasten.backends.llamacpp`).

    Raises:
        ValueError: an unknown dtype after ``@``.
    """
    return ContenderName.parse(name, _canonical_variant)


def split_variant(name: str) -> tuple[str, str | None]:
    """``"trie@bf16"`` -> ``("trie", "bfloat16")``; ``"trie"`` -> ``("trie", None)``;
    ``"suffix@llamacpp"`` -> ``("suffix", "llamacpp")`` (see :func:`parse_contender`).

    Raises:
        ValueError: an unknown dtype after ``@``.
    """
    parsed = parse_contender(name)
    return parsed.base, parsed.variant


def baseline_of(name: str) -> str:
    """The plain-decoding contender ``name`` is audited against: ``ar``, ``ar@DTYPE``, or
    ``ar@llamacpp`` for contenders on the GGUF file (llama.cpp peers and ``NAME@llamacpp``)."""
    base, dtype = split_variant(name)
    if base in PEERS and PEERS[base].uses_gguf:
        return "ar@llamacpp"
    return "ar" if dtype is None else f"ar@{dtype}"


def check_methods(names: list[str], has_draft: bool) -> tuple[list[str], list[str]]:
    """Validate ``--methods`` before any model loads; ``@DTYPE`` suffixes are canonicalized
    (``ar@bf16`` -> ``ar@bfloat16``).

    Returns:
        (methods to run, with ``ar`` first and ``ar@DTYPE`` before the first ``@DTYPE``
        method, added when missing; notes on what was added or skipped, e.g. a llama.cpp
        peer whose package is not installed).

    Raises:
        hasten.UnknownMethodError: a name that is neither ``ar``, a registered method nor a peer.
        ValueError: a repeated name, an unknown ``@DTYPE``, a llama.cpp peer with a dtype
            suffix, or a method needing a draft model without one.
    """
    from ..drafters import UnknownMethodError, list_methods

    split = [split_variant(n) for n in names]
    unknown = [b for b, _ in split if b != "ar" and b not in PEERS and b not in list_methods()]
    if unknown:
        known = ", ".join(["ar", *list_methods(), *PEERS])
        raise UnknownMethodError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {known}")
    names = [b if d is None else f"{b}@{d}" for b, d in split]
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice in {names}")
    for base, dtype in split:
        if dtype is not None and base in PEERS and PEERS[base].uses_gguf:
            raise ValueError(f"{base} runs the GGUF file; it takes no @{dtype} suffix")
        if dtype == "llamacpp" and base in PEERS:
            raise ValueError(f"{base} is a transformers peer; @llamacpp runs hasten's own methods on llama.cpp")
        if dtype == "llamacpp" and base != "ar":
            from ..drafters import get_method

            if not get_method(base).model_free:
                raise ValueError(
                    f"{base}@llamacpp: {base} runs a transformers model (its own layers or a draft "
                    "model); on llama.cpp use a model-free drafter"
                )
        needs = PEERS[base].needs_draft if base in PEERS else _takes_draft(base)
        if needs and not has_draft:
            raise ValueError(f"method {base!r} needs --draft-model (a model name/path or self:K)")
    notes, ordered = [], []
    for name in ["ar", *names]:
        base_line = baseline_of(name)
        if base_line not in ordered:
            if base_line not in names:
                notes.append(
                    f"added {base_line}: speedups and exactness are measured against plain decoding in the same run"
                )
            ordered.append(base_line)
        if name not in ordered:
            ordered.append(name)
    kept = []
    for name in ordered:
        base, variant = split_variant(name)
        reason = PEERS[base].missing() if base in PEERS else None
        if variant == "llamacpp":
            reason = _llamacpp_missing()
        if reason is None:
            kept.append(name)
        else:
            notes.append(f"skipped {name}: {reason}")
    return kept, notes


def build_contenders(
    names: list[str],
    ctx: PeerContext | dict[str | None, PeerContext],
    method_options: dict[str, dict[str, Any]] | None = None,
) -> list[Contender]:
    """Contenders for checked ``names`` (see :func:`check_methods`), in that order.

    ``ctx`` is one context, or one per dtype suffix (key None = no suffix) for
    ``NAME@DTYPE`` names. ``method_options[base name]`` are config fields of hasten method
    ``base name`` (shared by its dtype variants); ``ctx.draft`` becomes the
    ``draft_model`` of hasten methods that take one.

    Raises:
        KeyError: a ``@DTYPE`` name with no context for that dtype.
    """
    contexts = ctx if isinstance(ctx, dict) else {None: ctx}
    out: list[Contender] = []
    for name in names:
        base, dtype = split_variant(name)
        c = contexts[dtype]
        if base in PEERS:
            out.append(PEERS[base].build(name, c))
            continue
        options = dict((method_options or {}).get(base, {}))
        if _takes_draft(base) and c.draft is not None:
            options.setdefault("draft_model", c.draft)
        model = c.model if c.compiled is None else c.compiled
        out.append(HastenContender(name, model, None if base == "ar" else base, c.clock, options))
    return out
