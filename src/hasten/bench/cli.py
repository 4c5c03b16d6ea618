"""``hasten bench`` and ``hasten report``: a thin adapter from options to the harness.

    hasten bench --model smollm2-135m --methods ar,prompt_lookup,hf_greedy \\
                 --dataset spec_bench:PATH/question.jsonl --max-new-tokens 128 --out results/run1
    hasten bench --quick
    hasten report results/run1
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer

from .datasets import HUMANEVAL, SPEC_BENCH_SOURCE, DatasetError, Question, load_dataset, select
from .peers import PeerContext, Request, build_contenders, check_methods, split_variant
from .records import RECORDS_FILE, read_meta, read_records
from .report import render_report, text_table
from .runner import BenchRunner, BenchSettings, check_resume
from .tiny import TINY_RANDOM, tiny_random

__all__ = ["BenchPlan", "execute", "run_method_options", "add_commands", "QUICK_METHODS", "DEFAULT_METHODS"]

DEFAULT_METHODS = "ar,prompt_lookup,hf_greedy,hf_prompt_lookup"
QUICK_METHODS = "ar,prompt_lookup,hf_greedy"
QUICK_DATASETS = ("smoke", "humaneval:1")


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


def _machine() -> str:
    import torch

    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"


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
    import torch
    import transformers

    import hasten

    return _protocol(plan, names, questions) | {
        "notes": notes,
        "contenders": {c.name: c.describe() for c in contenders},
        "oracle": oracle,
        "machine": _machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": plan.command,
        "versions": {
            "hasten": hasten.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
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
        typer.echo(f"note: {note}", err=True)
    try:
        runner.warm_up(questions)
        _warn_unreliable_timing(model, oracle)
        runner.run(questions, resume=plan.resume)
        _warn_unreliable_timing()
    except KeyboardInterrupt:
        render_report(plan.out)
        typer.echo(
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
        typer.echo(f"warning: {warning}", err=True)


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
    typer.echo(
        f"compile ({dtype}): {compiled.compile_seconds:.1f} s, "
        f"{'compiled' if compiled.compiled else 'eager fallback: ' + str(compiled.fallback_reason)}",
        err=True,
    )
    return compiled


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def parse_method_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["prompt_lookup.max_ngram=4"]`` -> ``{"prompt_lookup": {"max_ngram": 4}}``, typed.

    Raises:
        ValueError: not METHOD.FIELD=VALUE, or what :func:`hasten.options.parse_options` raises.
        hasten.UnknownMethodError: an unknown method.
    """
    from ..options import parse_options

    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        method, dot, rest = pair.partition(".")
        if not dot or "=" not in rest:
            raise ValueError(f"--method-option {pair!r}: expected METHOD.FIELD=VALUE")
        grouped.setdefault(method, []).append(rest)
    return {method: parse_options(method, fields) for method, fields in grouped.items()}


def _command() -> str:
    args = [a for a in sys.argv[1:]]
    return shlex.join(["hasten", *args]) if Path(sys.argv[0]).name == "hasten" else shlex.join(sys.argv)


def bench(
    model: str = typer.Option(
        "smollm2-135m", help="Built-in name, local folder, hub id, or tiny-random (smoke tests)."
    ),
    methods: Optional[str] = typer.Option(
        None,
        help=f"Comma-separated: ar, hasten methods, hf_greedy, hf_prompt_lookup, "
        f"hf_assisted, llamacpp, llamacpp_prompt_lookup. Default {DEFAULT_METHODS} "
        f"(--quick: {QUICK_METHODS}).",
    ),
    dataset: list[str] = typer.Option([], help="spec_bench:PATH, PATH.jsonl, humaneval[:N] or smoke (repeatable)."),
    subtasks: Optional[str] = typer.Option(None, help="Comma-separated subtasks to keep (default all)."),
    per_subtask: Optional[int] = typer.Option(None, min=1, help="First N questions of each Spec-Bench subtask."),
    max_turns: Optional[int] = typer.Option(None, min=1, help="Turns per question (default all; mt_bench has 2)."),
    max_new_tokens: Optional[int] = typer.Option(None, min=1, help="Per turn (default 128; --quick 64)."),
    runs: int = typer.Option(1, min=1, help="Passes over the questions."),
    warmup: int = typer.Option(1, min=0, help="Untimed warm-up generations per method."),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or float64."),
    draft_model: Optional[str] = typer.Option(
        None, help="Draft for draft_model / hf_assisted: model name/path or self:K."
    ),
    method_option: list[str] = typer.Option(
        [], help="METHOD.FIELD=VALUE, e.g. prompt_lookup.max_ngram=4 (repeatable)."
    ),
    prompt_lookup_num_tokens: int = typer.Option(
        10, min=1, help="Draft length of hf_prompt_lookup / llamacpp_prompt_lookup."
    ),
    gguf: Optional[str] = typer.Option(None, help="GGUF file for llama.cpp peers (default: the built-in model's)."),
    do_sample: bool = typer.Option(
        False,
        help="Sample instead of greedy decoding (one --seed for all; plain "
        "decoding and draft-free methods are still audited token by token).",
    ),
    temperature: float = typer.Option(1.0),
    top_k: int = typer.Option(0, help="0 = off."),
    top_p: float = typer.Option(1.0),
    repetition_penalty: float = typer.Option(1.0),
    seed: int = typer.Option(0, help="Sampling seed."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default results/bench-<time> or results/quick-<time>)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished records."),
    quick: bool = typer.Option(
        False,
        help=f"Smoke check: methods {QUICK_METHODS}, built-in prompts + 1 HumanEval "
        "problem (or 1 question per subtask of --dataset), 64 tokens.",
    ),
    cost_cache: Optional[Path] = typer.Option(None, help="Forward-cost cache file (default: user cache dir)."),
    fresh_cost: bool = typer.Option(
        False, help="Measure the forward-cost curve (oracle) now instead of using the cache."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar with ETA."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads for the run (default: torch's choice)."),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the target forward of hasten methods (compile time reported apart; eager if it fails).",
    ),
) -> None:
    """Benchmark methods and peers on the Spec-Bench protocol; writes records, report.md and plots."""
    from ..sampling import SamplingParams

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if resume and out is None:
        raise ValueError("--resume needs --out (the run folder to continue)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("results") / f"{'quick' if quick else 'bench'}-{stamp}"
    sampling = SamplingParams(do_sample, temperature, top_k, top_p, repetition_penalty)
    settings = BenchSettings(
        max_new_tokens=max_new_tokens or (64 if quick else 128),
        runs=runs,
        warmup=warmup,
        max_turns=max_turns,
        request=Request(1, sampling, seed),
    )
    plan = BenchPlan(
        out=out,
        model=model,
        dtype=dtype,
        methods=_split(methods or (QUICK_METHODS if quick else DEFAULT_METHODS)),
        datasets=tuple(dataset) or (QUICK_DATASETS if quick else ()),
        subtasks=_split(subtasks),
        per_subtask=per_subtask or (1 if quick else None),
        settings=settings,
        method_options=parse_method_options(method_option),
        draft_model=draft_model,
        prompt_lookup_tokens=prompt_lookup_num_tokens,
        gguf=gguf,
        resume=resume,
        progress=progress,
        cost_cache=cost_cache,
        fresh_cost=fresh_cost,
        compile=compile_,
        command=_command(),
    )
    execute(plan)
    meta, records = read_meta(out), read_records(out / RECORDS_FILE)
    typer.echo("\n".join(text_table(records, meta["methods"], meta)))
    typer.echo(f"\nreport: {out / 'report.md'}")


def report(run_dir: Path = typer.Argument(..., help="A `hasten bench --out` folder.")) -> None:
    """Re-render report.md and the plots from a run folder's raw records."""
    path = render_report(run_dir)
    meta, records = read_meta(run_dir), read_records(run_dir / RECORDS_FILE)
    typer.echo("\n".join(text_table(records, meta["methods"], meta)))
    typer.echo(f"\nreport: {path}")


def add_commands(app: typer.Typer) -> None:
    """Register ``bench`` and ``report`` on the hasten Typer app."""
    app.command("bench")(bench)
    app.command("report")(report)
