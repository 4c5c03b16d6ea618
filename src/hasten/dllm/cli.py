"""``hasten dllm generate`` and ``hasten bench-dllm``: thin adapters from options to the library.

hasten dllm generate --model mdlm-small --method fast_dllm "Question: Sam has 5 pens. ..."
hasten bench-dllm --quick                 # < 3 min on 2 cores
hasten bench-dllm --out results/dllm --resume
"""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

__all__ = ["add_commands", "bench_dllm", "dllm_generate"]

dllm_app = typer.Typer(help="Diffusion language models (hasten.dllm).", no_args_is_help=True)


@dllm_app.command("generate")
def dllm_generate(
    prompt: str = typer.Argument(..., help="Prompt text."),
    model: str = typer.Option("mdlm-small", help="Shipped dLLM name (hasten.dllm.MODELS)."),
    method: str = typer.Option("fast_dllm", help="Decoding method (hasten.dllm.METHODS)."),
    options: str = typer.Option("{}", help="Method options as JSON, e.g. '{\"threshold\": 0.9}'."),
    gen_length: int = typer.Option(128, min=1, help="Tokens to generate."),
    block_length: int = typer.Option(32, min=1, help="Tokens per block."),
    threads: int = typer.Option(1, min=1, help="torch CPU threads."),
) -> None:
    """Generate text with a diffusion LM and print it with decode statistics."""
    import torch

    from .api import generate, load

    torch.set_num_threads(threads)
    try:
        method_options = json.loads(options)
    except json.JSONDecodeError as err:
        raise ValueError(f"--options is not JSON: {err}") from None
    adapter, tok = load(model)
    ids = torch.tensor([tok(prompt)["input_ids"]])
    out = generate(adapter, ids, gen_length, block_length, method, method_options)
    typer.echo(tok.decode(out.sequences[0, ids.shape[1] :], skip_special_tokens=True).rstrip())
    s = out.stats
    typer.echo(
        f"\n[{method}] {s.gen_tokens} tokens, {s.forward_passes} forwards ({s.tokens_per_forward:.2f} tokens/forward), "
        f"{s.seconds:.2f} s"
    )


def bench_dllm(
    quick: bool = typer.Option(False, help="8 prompts, gen length 64, three settings: under 3 minutes."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default results/bench-dllm-<time>)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished records."),
    model: str = typer.Option("mdlm-small", help="Shipped dLLM name."),
    prompts: Optional[int] = typer.Option(None, min=1, help="Prompts per task (default 50; quick 8)."),
    tasks: Optional[str] = typer.Option(None, help="Comma list of tasks: arithmetic,text (default both)."),
    settings: Optional[str] = typer.Option(
        None, help="Comma list of settings (hasten.dllm.bench.SETTINGS; default all), e.g. 'fast_dllm t0.9 dual'."
    ),
    threads: int = typer.Option(1, min=1, help="torch CPU threads."),
) -> None:
    """Measure dLLM methods (fast_dllm, dkv_cache, local_leap, prophet, ar_guided) against the
    reference sampler: interleaved speedup, forwards per token, accuracy, agreement; writes
    records.jsonl, report.md, pareto.png and canvas.png."""
    import torch

    from .bench import DLLMBenchOptions, report_table, run_bench

    torch.set_num_threads(threads)
    if resume and out is None:
        raise ValueError("--resume needs --out (the run folder to continue)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("results") / f"bench-dllm-{'quick-' if quick else ''}{stamp}"
    command = shlex.join(["hasten", *sys.argv[1:]]) if Path(sys.argv[0]).name == "hasten" else shlex.join(sys.argv)
    extra = {"n_prompts": prompts} if prompts else {}
    if tasks:
        extra["tasks"] = tuple(t.strip() for t in tasks.split(",") if t.strip())
    if settings:
        extra["settings"] = tuple(t.strip() for t in settings.split(",") if t.strip())
    opts = DLLMBenchOptions.make(out, quick=quick, resume=resume, command=command, model=model, **extra)
    records = run_bench(opts, progress=typer.echo)
    for line in report_table(records):
        typer.echo(line)
    typer.echo(f"\nreport: {out / 'report.md'}")


def add_commands(app: typer.Typer) -> None:
    """Register ``dllm`` (generate) and ``bench-dllm`` on the hasten Typer app."""
    app.add_typer(dllm_app, name="dllm")
    app.command("bench-dllm")(bench_dllm)
