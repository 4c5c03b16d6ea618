"""``hasten bench`` and ``hasten report``: a thin adapter from options to the harness.

    hasten bench --model smollm2-135m --methods ar,prompt_lookup,hf_greedy \\
                 --dataset spec_bench:PATH/question.jsonl --max-new-tokens 128 --out results/run1
    hasten bench --quick
    hasten report results/run1
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Optional

import typer

from ..benchcore import command_line
from .peers import Request
from .plan import DEFAULT_METHODS, QUICK_DATASETS, QUICK_METHODS, BenchPlan, execute, run_method_options
from .records import RECORDS_FILE, read_meta, read_records
from .report import render_report, text_table
from .runner import BenchSettings

__all__ = ["BenchPlan", "execute", "run_method_options", "add_commands", "QUICK_METHODS", "DEFAULT_METHODS"]


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
    return command_line()


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
