"""``hasten bench-diffusion``: a thin adapter from options to :func:`.runner.run_bench`.

hasten bench-diffusion --models digits-dit --out results/bench-diffusion
hasten bench-diffusion --quick
hasten bench-diffusion --resume --out results/bench-diffusion
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

import typer

from ...benchcore import command_line

__all__ = ["add_commands", "bench_diffusion", "DEFAULT_MODELS"]

DEFAULT_MODELS = ("digits-dit", "reach-policy")  # those of them that are installed


def _command() -> str:
    return command_line()


def bench_diffusion(
    models: Optional[str] = typer.Option(
        None,
        help=f"Comma-separated suites (trained models) to measure "
        f"(default: {','.join(DEFAULT_MODELS)}, those installed).",
    ),
    quick: bool = typer.Option(False, help="Reduced settings and batch: a few minutes in all."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default results/bench-diffusion-<time>)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished records."),
    seeds: str = typer.Option("0", help="Comma-separated noise seeds."),
    repeats: int = typer.Option(2, min=1, help="Timed (uncached, method) pairs per setting."),
    threads: int = typer.Option(1, min=1, help="torch CPU threads."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Measure diffusion acceleration methods and peers on trained models: speedup vs
    uncached in the same run, skipped block evaluations, fidelity; writes records.jsonl,
    report.md, a sample grid and Pareto plots."""
    import torch

    from hasten.diffusion.bench import available_suites
    from hasten.diffusion.bench.records import RECORDS_FILE, read_bench_records
    from hasten.diffusion.bench.report import summarize
    from hasten.diffusion.bench.runner import BenchOptions, run_bench

    torch.set_num_threads(threads)
    if resume and out is None:
        raise ValueError("--resume needs --out (the run folder to continue)")
    if models is None:
        names = tuple(m for m in DEFAULT_MODELS if m in available_suites())
    else:
        names = tuple(m.strip() for m in models.split(",") if m.strip())
    unknown = [m for m in names if m not in available_suites()]
    if unknown:
        raise ValueError(f"unknown --models {unknown}; available: {', '.join(available_suites())}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("results") / f"bench-diffusion-{'quick-' if quick else ''}{stamp}"
    options = BenchOptions(
        out=out,
        models=names,
        quick=quick,
        seeds=tuple(int(s) for s in seeds.split(",")),
        repeats=repeats,
        resume=resume,
        progress=progress,
        command=_command(),
    )
    run_bench(options)
    records = read_bench_records(out / RECORDS_FILE)
    for name in names:
        for row in summarize(records, name, ()):
            status = row.get(
                "error", f"{row.get('speedup', float('nan')):.2f}x, {row.get('skipped_fraction', 0):.0%} skipped"
            )
            typer.echo(f"{name:16s} {row['method']:22s} {row['setting']:32s} {status}")
    typer.echo(f"\nreport: {out / 'report.md'}")


def add_commands(app: typer.Typer) -> None:
    """Register ``bench-diffusion`` on the hasten Typer app."""
    app.command("bench-diffusion")(bench_diffusion)
