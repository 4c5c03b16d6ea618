"""The decode loop: prefill, then draft -> verify -> accept -> commit, until a stop.

``generate`` is the one entry point. With ``method=None`` it runs :func:`_plain_loop`, the
reference path (one token per target forward, exactly ``model.generate``'s arithmetic).
With a method it runs :func:`_speculative_loop`: the prompt but its last token is
prefilled, then each step verifies the root (last committed token) plus a draft tree in
one target forward, accepts the longest agreeing
path plus one target token, and compacts the KV cache to the accepted path.

Lossless: greedy output is token-identical to plain greedy decoding. Sampled output of a
draft-free method is token-identical to plain sampling with the same seed (position-keyed
draws, :mod:`hasten.sampling`); a drafter that samples its drafts is verified with the
speculative sampling rule, whose output has the plain sampling distribution (see
:mod:`hasten.verify`).

Glossary: *draft* = candidate tokens; *verification step* = one target forward over root +
draft; *accepted tokens* = draft tokens the target agreed with; *bonus token* = the
target's own token after the accepted path; *mean accepted tokens* (tau) = tokens committed
per verification step (accepted + 1).

Dims: T tokens, N draft nodes, V vocabulary.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import torch

from .budget import BudgetConfig, DraftBudget
from .cache_probe import check_cache
from .drafters.base import DraftRequest, VerifiedStep, build_drafter
from .padding import split_left_padding
from .results import GenerationResult, GenerationStats
from .sampling import PositionDraws, SamplingParams, choose_tokens, presence_rows, process_logits, seen_mask
from .targets import Target, TransformersTarget, resolve_target
from .tree import DraftTree, tree_layout
from .verify import recursive_rejection_walk, speculative_sample_accept, walk_tree

__all__ = ["generate", "GenerationResult", "GenerationStats", "TransformersTarget", "resolve_target"]

Streamer = Callable[[list[int]], None]


class Committer:
    """Appends accepted tokens, enforcing eos, stop strings, the token budget and the
    context length; streams exactly what it keeps."""

    def __init__(
        self,
        prompt: list[int],
        max_new_tokens: int,
        context_length: int | None,
        eos_ids: set[int],
        stop: Sequence[str],
        tokenizer,
        streamer: Streamer | None,
        track_seen: int | None,
        device,
    ):
        self.tokens = list(prompt)
        self.prompt_len = len(prompt)
        self.limit = max_new_tokens
        if context_length is not None:
            self.limit = min(self.limit, context_length - len(prompt))
        self.context_limited = self.limit < max_new_tokens
        self.eos_ids, self.stop, self.tokenizer, self.streamer = eos_ids, list(stop), tokenizer, streamer
        self.finish_reason = ""
        self.seen = None
        if track_seen is not None:
            self.seen = seen_mask(prompt, track_seen, device)

    @property
    def remaining(self) -> int:
        return self.limit - (len(self.tokens) - self.prompt_len)

    @property
    def done(self) -> bool:
        return bool(self.finish_reason)

    def _stop_string_hit(self) -> bool:
        text = self.tokenizer.decode(self.tokens[self.prompt_len :])
        return any(s in text for s in self.stop)

    def commit(self, new: list[int]) -> int:
        """Append ``new`` up to the first stop condition; returns how many were kept."""
        kept = 0
        for token in new:
            self.tokens.append(token)
            kept += 1
            if token in self.eos_ids:
                self.finish_reason = "eos"
            elif self.stop and self._stop_string_hit():
                self.finish_reason = "stop_string"
            elif self.remaining <= 0:
                self.finish_reason = "context_length" if self.context_limited else "max_new_tokens"
            if self.finish_reason:
                break
        if self.seen is not None:
            self.seen[torch.tensor(new[:kept], device=self.seen.device)] = True
        if self.streamer is not None and kept:
            self.streamer(new[:kept])
        return kept


def stats_name(drafter) -> str:
    return drafter.name or type(drafter).__name__


def _prompt_list(input_ids) -> list[int]:
    if hasattr(input_ids, "keys") and "input_ids" in input_ids:  # BatchEncoding / dict
        input_ids = input_ids["input_ids"]
    if isinstance(input_ids, torch.Tensor):
        if input_ids.dim() == 2:
            if input_ids.shape[0] != 1:
                raise ValueError(
                    f"batch size {input_ids.shape[0]}: hasten.generate decodes one sequence "
                    "at a time (batch size 1); loop over prompts"
                )
            input_ids = input_ids[0]
        if input_ids.dim() != 1:
            raise ValueError(f"input_ids must have shape (1, T) or (T,), got {tuple(input_ids.shape)}")
        if input_ids.numel() and input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be integer token ids, got {input_ids.dtype}")
        return [int(t) for t in input_ids.tolist()]
    return [int(t) for t in input_ids]


def _plain_loop(
    target: Target,
    cache,
    run: Committer,
    params: SamplingParams,
    draws: PositionDraws | None,
    stats: GenerationStats,
    t0: float,
) -> None:
    """Reference path: one target forward per token (sampled with position-keyed draws)."""
    logits = target.forward(cache, run.tokens, last_only=True)
    run.commit(_choose_next(logits, run, params, draws))
    stats.prefill_seconds = time.perf_counter() - t0
    while not run.done:
        logits = target.forward(cache, run.tokens[-1:], last_only=True)
        stats.committed.append(run.commit(_choose_next(logits, run, params, draws)))
        stats.accepted.append(0)
        stats.drafted.append(0)


def _choose_next(
    logits: torch.Tensor, run: Committer, params: SamplingParams, draws: PositionDraws | None
) -> list[int]:
    scores = process_logits(logits, params, _seen(run))
    return choose_tokens(scores, params, draws=None if draws is None else draws([len(run.tokens)])).tolist()


def _seen(run: Committer) -> torch.Tensor | None:
    return None if run.seen is None else run.seen.unsqueeze(0)


def _verify(
    target: Target,
    cache,
    run: Committer,
    draft: DraftTree,
    params: SamplingParams,
    generator: torch.Generator,
    draws: PositionDraws | None,
) -> tuple[list[int], int, list[int] | None, torch.Tensor]:
    """One verification step: target forward over root + draft, then the acceptance rule:
    greedy, position-keyed sampling (row r predicts position len(tokens) + depth(r)), or
    the speculative sampling rule for drafts with ``draft_probs`` when ``draws`` is None.

    Returns (accepted node indices, next token, target token per row or None when the
    speculative sampling rule was used, processed scores (N+1, V)); the cache is
    compacted to the accepted path."""
    start = target.cache_length(cache)
    logits = target.verify_forward(cache, run.tokens[-1], draft)
    layout = tree_layout(draft.parents, draft.tokens)
    seen = None
    if params.uses_history:
        path_tokens = torch.tensor(draft.tokens, dtype=torch.long, device=logits.device)
        seen = presence_rows(run.seen, path_tokens, layout.node_ancestors.to(logits.device))
    scores = process_logits(logits, params, seen)
    if draft.draft_probs is not None and not params.greedy and draws is None:
        target_probs = scores.softmax(-1)
        draft_probs = draft.draft_probs.to(target_probs)
        if draft.is_chain:
            draft_tokens = torch.tensor(draft.tokens, dtype=torch.long, device=logits.device)
            path, nxt = speculative_sample_accept(draft_tokens, draft_probs, target_probs, generator)
        else:
            path, nxt = recursive_rejection_walk(layout.children, draft.tokens, draft_probs, target_probs, generator)
        row_tokens = None
    else:
        positions = None if draws is None else draws([len(run.tokens) + d for d in layout.depths])
        row_tokens = choose_tokens(scores, params, generator, positions).tolist()
        path, nxt = walk_tree(layout.children, row_tokens)
    target.keep_rows(cache, start, [0] + [node + 1 for node in path])
    return path, nxt, row_tokens, scores


def _speculative_loop(
    target: Target,
    cache,
    run: Committer,
    drafter,
    params: SamplingParams,
    generator: torch.Generator,
    draws: PositionDraws | None,
    stats: GenerationStats,
    t0: float,
    budget: DraftBudget | None,
) -> None:
    """Prefill all but the last prompt token, so the very first step already verifies a
    draft with the last prompt token as its root."""
    if len(run.tokens) > 1:
        target.forward(cache, run.tokens[:-1], last_only=True)
    stats.prefill_seconds = time.perf_counter() - t0
    if budget is not None:
        budget.reset()
    while not run.done:
        max_depth = run.remaining - 1
        draft = drafter.propose(run.tokens, max_depth) if max_depth >= 1 else None
        target.rollback(cache, len(run.tokens) - 1)  # undo anything a self-speculative drafter appended
        if draft is not None and len(draft):
            draft = draft.truncated(max_depth, target.max_nodes(cache))
            if budget is not None:
                draft = budget.cut(draft, max_depth)
        draft = draft if draft is not None and len(draft) else DraftTree.chain([])
        path, nxt, row_tokens, scores = _verify(target, cache, run, draft, params, generator, draws)
        if budget is not None and len(draft):
            budget.observe_step(draft, path)
        root_position = len(run.tokens) - 1
        kept = run.commit([draft.tokens[node] for node in path] + [nxt])
        stats.drafted.append(len(draft))
        stats.accepted.append(min(len(path), kept))  # tokens accepted past eos / a stop string are not kept
        stats.committed.append(kept)
        if len(draft) or getattr(drafter, "observes_plain_steps", False):
            drafter.on_accept(VerifiedStep(run.tokens, draft, path, nxt, row_tokens, scores, root_position))


def generate(
    model: torch.nn.Module,
    input_ids,
    *,
    method=None,
    max_new_tokens: int = 128,
    draft_model=None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    eos_token_id=None,
    stop: Iterable[str] | str | None = None,
    tokenizer=None,
    seed: int | None = None,
    streamer: Streamer | None = None,
    method_options: dict[str, Any] | None = None,
    draft_budget: BudgetConfig | str | None = "auto",
    kv_cache: str = "dynamic",
    attention_mask=None,
) -> GenerationResult:
    """Generate up to ``max_new_tokens`` tokens after ``input_ids``, losslessly accelerated.

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM``) whose forward takes a
            KV cache; it is not modified. Or a :class:`hasten.compile.CompiledModel`
            (:func:`hasten.compile_model`): the same model with a compiled forward. Or a
            backend model with an ``engine_target()`` method, e.g.
            :class:`hasten.backends.llamacpp.LlamaCppModel` (:func:`hasten.load_gguf`):
            a GGUF file on llama.cpp kernels, for model-free methods.
        input_ids: (1, T) or (T,) int64 prompt token ids, a list of ints, or the
            ``BatchEncoding`` that ``apply_chat_template(..., return_tensors="pt")`` returns.
        method: None for plain decoding; a registered name (:func:`hasten.list_methods`),
            a method config instance, or a :class:`~hasten.drafters.Drafter`.
        max_new_tokens: upper bound on new tokens (>= 1).
        draft_model: the draft LM for ``method="draft_model"`` (or ``"self:k"``).
        do_sample, temperature, top_k, top_p, repetition_penalty: see
            :class:`~hasten.sampling.SamplingParams`.
        eos_token_id: int or ints that end generation (kept in the output); None = the
            model's ``generation_config``; ``[]`` = never stop on eos.
        stop: strings that end generation once the decoded new text contains one (the
            token completing it is kept); needs ``tokenizer``.
        tokenizer: used for ``stop`` and to fill ``GenerationResult.text``.
        seed: seeds sampling; None = random. Plain decoding and draft-free methods draw
            each position's token from a uniform keyed by (seed, position), so their
            sampled outputs are token-identical for the same seed; drafters that sample
            their drafts (``proposes_distributions``) are verified with the speculative
            sampling rule on seeded RNGs (same distribution, other tokens).
        streamer: called with each list of newly committed token ids, in order.
        method_options: fields of the method's config, e.g. ``{"max_ngram": 4}``.
        draft_budget: ``"auto"`` (default) cuts each draft to the depth that maximizes
            expected tokens per second under this machine's measured forward cost
            (:mod:`hasten.budget`; the cost curve is measured once per model, dtype and
            machine, about 5 s for SmolLM2, and cached); a :class:`BudgetConfig` to tune
            it; None verifies every proposed node. Never changes output.
        kv_cache: ``"dynamic"`` (grow by concatenation) or ``"static"`` (preallocated
            buffers, in-place rollback and compaction: :class:`hasten.kv.PreallocatedLayer`).
            Never changes output.
        attention_mask: (1, T) or (T,) 0/1 mask whose zeros mark leading (left) pads, or
            None (a ``BatchEncoding``'s own mask is used). The pads are not decoded: the
            output equals ``model.generate`` with the same mask, pads included in
            ``sequences`` as it returns them.

    Returns:
        :class:`GenerationResult` with ``sequences`` (1, T + new) int64 and ``stats``.

    Raises:
        ValueError: empty prompt, prompt not shorter than the model's context length,
            ``max_new_tokens < 1``, batch size > 1, a prompt tensor of another rank,
            stop strings without a tokenizer, a draft model with another vocabulary,
            ``draft_model`` / ``method_options`` without a method, invalid sampling
            parameters, an attention mask with zeros after the first real token.
        hasten.cache_probe.UnsupportedCacheError (a ValueError): a model whose cache hasten cannot
            roll back exactly (recurrent / hybrid models), found before generating.
        hasten.drafters.UnknownMethodError: an unknown method name.
        ValueError: a method that runs the target's own layers (``layer_skip``,
            ``early_exit``, ``hierarchical``) on a backend model.
        TypeError: options that the method's config does not have.
    """
    params = SamplingParams(do_sample, temperature, top_k, top_p, repetition_penalty)
    options = dict(method_options or {})
    if method is None and (draft_model is not None or options):
        raise ValueError(
            "draft_model= and method_options= need a method (e.g. method='draft_model'); "
            "plain decoding (method=None) takes neither"
        )
    if draft_model is not None:
        options["draft_model"] = draft_model
    drafter = None if method is None else build_drafter(method, **options)
    if draft_budget == "auto":
        draft_budget = BudgetConfig()
    elif draft_budget is not None and not isinstance(draft_budget, BudgetConfig):
        raise ValueError(f"draft_budget must be 'auto', None or a BudgetConfig, got {draft_budget!r}")
    pads, input_ids = split_left_padding(input_ids, attention_mask)
    prompt = _prompt_list(input_ids)
    target = resolve_target(model)
    model = target.model  # the module itself when a CompiledModel was passed
    if drafter is not None and getattr(drafter, "needs_torch_target", False) and target.backend != "transformers":
        raise ValueError(
            f"method {stats_name(drafter)!r} runs parts of the target model itself and needs a "
            f"transformers model; on the {target.backend} backend use a model-free drafter "
            f"({', '.join(target.supported_methods())})"
        )
    if not prompt:
        raise ValueError("empty prompt: give at least one token (e.g. the BOS token)")
    if target.context_length is not None and len(prompt) >= target.context_length:
        raise ValueError(
            f"prompt has {len(prompt)} tokens but the model's context length is "
            f"{target.context_length}; shorten the prompt"
        )
    if kv_cache not in ("dynamic", "static"):
        raise ValueError(f"kv_cache must be 'dynamic' or 'static', got {kv_cache!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    check_cache(target, kv_cache == "static", speculative=drafter is not None)
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if stop and tokenizer is None:
        raise ValueError("stop strings need tokenizer=")
    generator = torch.Generator()
    if seed is None:
        seed = generator.seed()
    else:
        generator.manual_seed(seed)
    keyed = not params.greedy and (drafter is None or not drafter.proposes_distributions)
    draws = PositionDraws(seed) if keyed else None
    run = Committer(
        prompt,
        max_new_tokens,
        target.context_length,
        target.eos_ids(eos_token_id),
        stop,
        tokenizer,
        streamer,
        target.vocab_size if params.uses_history else None,
        target.device,
    )
    stats = GenerationStats(method="ar" if drafter is None else stats_name(drafter), prompt_tokens=len(prompt))
    with torch.inference_mode():
        t0 = time.perf_counter()
        if drafter is None:
            _plain_loop(target, target.new_cache(kv_cache == "static"), run, params, draws, stats, t0)
        else:
            draft_generator = torch.Generator()
            draft_generator.manual_seed((seed + 0x5DEECE66D) % (1 << 64))  # independent of the target's stream
            budget = None if draft_budget is None else DraftBudget(target.cost_curve(), draft_budget)
            cache = target.new_cache(kv_cache == "static")
            drafter.begin(DraftRequest(prompt, model, params, draft_generator, target.vocab_size, cache))
            t0 = time.perf_counter()  # the one-off cost measurement is not generation time
            _speculative_loop(target, cache, run, drafter, params, generator, draws, stats, t0, budget)
            stats.drafter = drafter.stats()
        stats.decode_seconds = time.perf_counter() - t0 - stats.prefill_seconds
    stats.new_tokens = len(run.tokens) - len(prompt)
    stats.forward_passes = target.forwards
    stats.forward_seconds = target.forward_seconds
    stats.finish_reason = run.finish_reason
    sequences = torch.tensor([pads + run.tokens], dtype=torch.long)
    text = tokenizer.decode(run.tokens[len(prompt) :], skip_special_tokens=True) if tokenizer is not None else None
    return GenerationResult(sequences, stats, text)
