"""The bench harness's library API: a :class:`BenchPlan` (what to run) and :func:`execute`
(load the model, build the contenders, run them interleaved, write records and the report).
``hasten bench`` (:mod:`hasten.bench.cli`) is a thin typer adapter over these.

    from hasten.bench.plan import BenchPlan, execute
    execute(BenchPlan(model="smollm2-135m", methods=("ar", "suffix"), datasets=("smoke",), out=Path("results/x")))
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..benchcore import machine, utc_date, versions
from .datasets import HUMANEVAL, SPEC_BENCH_SOURCE, DatasetError, Question, load_dataset, select
from .peers import PeerContext, build_contenders, check_methods, split_variant
from .report import render_report
from .runner import BenchRunner, BenchSettings, check_resume
from .tiny import TINY_RANDOM, tiny_random

__all__ = [
    "BenchPlan",
    "execute",
    "load_questions",
    "run_method_options",
    "QUICK_METHODS",
    "QUICK_DATASETS",
    "DEFAULT_METHODS",
]


DEFAULT_METHODS = "ar,prompt_lookup,hf_greedy,hf_prompt_lookup"
QUICK_METHODS = "ar,prompt_lookup,hf_greedy"
QUICK_DATASETS = ("smoke", "humaneval:1")


def _note(message: str, err: bool = True) -> None:
    """A progress note or warning for the person running the bench (stderr)."""
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


@dataclass(frozen=True)
class BenchPlan:
    """Everything one benchmark run needs (the CLI fills it; scripts may build it).

    Attributes:
        methods: names as in ``--methods``. datasets: ``--dataset`` specs.
        subtasks: keep only these (None = all). per_subtask: first N questions of each
            Spec-Bench subtask (HumanEval's count comes from ``humaneval:N``).
        method_options: ``{"prompt_lookup": {"max_ngram": 4}}``. Methods with a
            ``skip_cache`` (layer_skip, early_exit) that are not given one keep it in
            ``out/skip_sets.json``: the run learns from its own first requests (and
            ``--resume`` continues from there), independent of the user's cache.
        draft_model: ``self:K`` or a model name/path for draft-model methods and hf_assisted.
        prompt_lookup_tokens: hf_prompt_lookup / llamacpp_prompt_lookup draft length.
        gguf: GGUF file for llama.cpp peers (None = the built-in model's).
        cost_cache: cost-curve cache file (None = user cache dir).
        fresh_cost: measure the cost curve now instead of reading the cache (a cached
            curve measured while the machine was busy gives a wrong oracle).
        compile: hasten contenders run the target through :func:`hasten.compile_model`
            (compiled before the run; compile seconds go to ``meta.json``, not to any
            generation's time).
        command: recorded in the report.
    """

    out: Path
    model: str = "smollm2-135m"
    dtype: str = "float32"
    methods: tuple[str, ...] = tuple(DEFAULT_METHODS.split(","))
    datasets: tuple[str, ...] = ()
    subtasks: tuple[str, ...] | None = None
    per_subtask: int | None = None
    settings: BenchSettings = field(default_factory=BenchSettings)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    draft_model: str | None = None
    prompt_lookup_tokens: int = 10
    gguf: str | None = None
    resume: bool = False
    progress: bool = True
    cost_cache: Path | None = None
    fresh_cost: bool = False
    compile: bool = False
    command: str = ""


def load_questions(datasets, subtasks, per_subtask) -> list[Question]:
    """Questions of every dataset spec, filtered (see :class:`BenchPlan`).

    Raises:
        DatasetError: no dataset given, a bad spec, or nothing left after filtering.
    """
    if not datasets:
        raise DatasetError(
            f"give --dataset spec_bench:PATH/question.jsonl (from {SPEC_BENCH_SOURCE}) "
            "and/or --dataset humaneval[:N], or use --quick"
        )
    questions: list[Question] = []
    for spec in datasets:
        loaded = load_dataset(spec)
        limit = None if spec.split(":")[0] == HUMANEVAL else per_subtask
        questions += select(loaded, subtasks, limit)
    if not questions:
        raise DatasetError("no questions left after --subtasks / --per-subtask")
    return questions


def _load_target(name: str, dtype: str):
    import hasten

    from ..models import resolve_dtype

    if name == TINY_RANDOM:
        return tiny_random(dtype=resolve_dtype(dtype))
    return hasten.load_model(name, dtype=dtype)


def _load_draft(spec: str | None, model, dtype: str, tokenizer):
    if spec is None:
        return None
    from ..drafters.draft_model import resolve_draft_model
    from ..options import load_draft_model as load_named

    return resolve_draft_model(spec, model) if spec.startswith("self:") else load_named(spec, dtype, tokenizer)


def _protocol(plan: BenchPlan, names, questions) -> dict[str, Any]:
    """The meta.json fields known before any model loads (checked early on --resume)."""
    s = plan.settings.request.sampling
    return {
        "model": plan.model,
        "dtype": plan.dtype,
        "methods": list(names),
        "max_new_tokens": plan.settings.max_new_tokens,
        "runs": plan.settings.runs,
        "warmup": plan.settings.warmup,
        "max_turns": plan.settings.max_turns,
        "sampling": {
            "greedy": s.greedy,
            "do_sample": s.do_sample,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "repetition_penalty": s.repetition_penalty,
            "seed": plan.settings.request.seed,
        },
        "method_options": {k: {f: repr(v) for f, v in o.items()} for k, o in plan.method_options.items()},
        "draft_model": plan.draft_model,
        "peer_options": {"prompt_lookup_num_tokens": plan.prompt_lookup_tokens, "gguf": plan.gguf},
        "datasets": list(plan.datasets),
        "questions": [[q.subtask, q.question_id] for q in questions],
    }


def _meta(plan: BenchPlan, names, notes, contenders, questions, oracle) -> dict[str, Any]:
    return _protocol(plan, names, questions) | {
        "notes": notes,
        "contenders": {c.name: c.describe() for c in contenders},
        "oracle": oracle,
        "machine": machine(),
        "date": utc_date(),
        "command": plan.command,
        "versions": versions("transformers"),
    }


def _oracle(model, cost_cache: Path | None, fresh: bool) -> dict[str, Any]:
    """Oracle speedup from the forward cost curve: the cached one (measured once per model,
    dtype, thread count and machine), or one measured now when ``fresh``, which also
    replaces the cached curve that hasten's draft sizing reads."""
    from ..cost import load_or_measure

    curve = load_or_measure(model, cache_file=cost_cache, refresh=fresh)
    speedup, k = curve.oracle_speedup()
    return {
        "speedup": speedup,
        "k": k,
        "curve": curve.to_json(),
        "source": "measured in this run" if fresh else "cache",
    }


def run_method_options(names: list[str], options: dict[str, dict[str, Any]], out: Path) -> dict[str, dict[str, Any]]:
    """``options`` plus ``skip_cache=out/skip_sets.json`` for every hasten method in
    ``names`` that uses a skip-set cache (``uses_skip_cache``) the user left unset."""
    from ..drafters.base import get_method, list_methods

    merged = {method: dict(fields) for method, fields in options.items()}
    for base in dict.fromkeys(split_variant(n)[0] for n in names):
        if base not in list_methods():
            continue  # plain decoding or a peer
        if get_method(base).uses_skip_cache:
            merged.setdefault(base, {}).setdefault("skip_cache", str(out / "skip_sets.json"))
    return merged


def execute(plan: BenchPlan) -> Path:
    """Run the benchmark described by ``plan`` and render its report.

    Returns:
        the run folder.

    Raises:
        hasten.UnknownMethodError / ValueError / DatasetError: bad options (before any
            model loads). KeyboardInterrupt: after the report of what finished is written.
    """
    import torch

    names, notes = check_methods(list(plan.methods), plan.draft_model is not None)
    for method in plan.method_options:
        if method not in {split_variant(n)[0] for n in names} or method == "ar":
            raise ValueError(f"--method-option for {method!r}, which is not a hasten method in --methods")
    questions = load_questions(plan.datasets, plan.subtasks, plan.per_subtask)
    check_resume(plan.out, _protocol(plan, names, questions), plan.resume)  # before minutes of loading
    model, tokenizer = _load_target(plan.model, plan.dtype)
    oracle = _oracle(model, plan.cost_cache, plan.fresh_cost)
    contexts: dict[str | None, PeerContext] = {}
    compile_info: dict[str, Any] = {}
    variants: dict[str, torch.nn.Module] = {}
    for dtype in dict.fromkeys(split_variant(n)[1] for n in names):  # None (the main dtype) first
        if dtype == "llamacpp":
            variant = _load_llamacpp(plan, model)
        else:
            variant = model if dtype in (None, plan.dtype) else _load_target(plan.model, dtype)[0]
        if variant is not model and plan.fresh_cost:
            from ..cost import load_or_measure

            load_or_measure(variant, cache_file=plan.cost_cache, refresh=True)  # the curve its draft sizing reads
        if dtype is not None:
            variants[dtype] = variant
        backend = dtype == "llamacpp"
        draft = None if backend else _load_draft(plan.draft_model, variant, dtype or plan.dtype, tokenizer)
        compiled = _compile(variant, compile_info, dtype or plan.dtype) if plan.compile and not backend else None
        contexts[dtype] = PeerContext(
            variant,
            plan.model,
            time.perf_counter,
            draft,
            plan.prompt_lookup_tokens,
            plan.gguf,
            torch.get_num_threads(),
            plan.settings.request.seed,
            compiled,
        )
    contenders = build_contenders(names, contexts, run_method_options(names, plan.method_options, plan.out))
    runner = BenchRunner(
        model, tokenizer, contenders, plan.settings, plan.out, progress=plan.progress, variant_models=variants
    )
    runner.prepare(
        _meta(plan, names, notes, contenders, questions, oracle) | {"compile": compile_info or None}, plan.resume
    )
    for note in notes:
        _note(f"note: {note}", err=True)
    try:
        runner.warm_up(questions)
        _warn_unreliable_timing(model, oracle)
        runner.run(questions, resume=plan.resume)
        _warn_unreliable_timing()
    except KeyboardInterrupt:
        render_report(plan.out)
        _note(
            f"\ninterrupted; finished records and a partial report are in {plan.out}; "
            f"continue with --resume --out {plan.out}",
            err=True,
        )
        raise
    render_report(plan.out)
    return plan.out


def _warn_unreliable_timing(model=None, oracle: dict[str, Any] | None = None) -> None:
    """Print a warning when load or cost drift makes this run's timings unreliable (see .reliability)."""
    from ..cost import CostCurve
    from .reliability import timing_warnings

    curve = CostCurve.from_json(oracle["curve"]) if oracle else None
    for warning in timing_warnings(model, curve):
        _note(f"warning: {warning}", err=True)


def _load_llamacpp(plan: BenchPlan, model):
    """The GGUF file of ``plan.model`` (or ``--gguf``) in llama.cpp, for ``NAME@llamacpp``."""
    import torch

    from ..backends.llamacpp import LlamaCppModel
    from .peers import context_length, peer_gguf_path

    ctx = PeerContext(model, plan.model, time.perf_counter, gguf=plan.gguf)
    return LlamaCppModel(peer_gguf_path(ctx), threads=torch.get_num_threads(), context_length=context_length(model))


def _compile(model, info: dict[str, Any], dtype: str):
    """The compiled target for hasten contenders; compile time and outcome go to ``info``."""
    from ..compile import compile_model

    compiled = compile_model(model)
    info[dtype] = {
        "seconds": round(compiled.compile_seconds, 2),
        "compiled": compiled.compiled,
        "fallback_reason": compiled.fallback_reason,
    }
    _note(
        f"compile ({dtype}): {compiled.compile_seconds:.1f} s, "
        f"{'compiled' if compiled.compiled else 'eager fallback: ' + str(compiled.fallback_reason)}",
        err=True,
    )
    return compiled
