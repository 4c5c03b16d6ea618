"""``hasten bench-arimage``: a thin adapter from options to :func:`hasten.arimage.bench.run_bench`.

hasten bench-arimage --quick                 # < 3 min on 2 cores
hasten bench-arimage --out results/arimage
hasten bench-arimage --out results/arimage --resume
hasten bench-arimage --out results/mar --models digits-mar --methods disa
"""

from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

__all__ = ["add_commands", "bench_arimage"]


def bench_arimage(
    quick: bool = typer.Option(False, help="Fewer images, settings and repeats: under 3 minutes."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default results/bench-arimage-<time>)."),
    resume: bool = typer.Option(False, help="Continue the run in --out, skipping finished records."),
    models: str = typer.Option("digits-ar,digits-mar", help="Comma-separated models."),
    threads: int = typer.Option(1, min=1, help="torch CPU threads."),
    methods: Optional[str] = typer.Option(
        None, help="Comma-separated methods to measure (default all); --resume can add the rest later."
    ),
) -> None:
    """Measure AR image methods (sjd, gsd, lantern, continuous_sd, disa) against the reference
    sampler: wall-clock speedup and forwards per image (same seeds, interleaved), classifier
    accuracy, FID on classifier features with its noise floor; writes records.jsonl,
    report.md, grid.png and speedup_fidelity.png."""
    import torch

    from .bench import ArimageBenchOptions, report_table, run_bench

    torch.set_num_threads(threads)
    if resume and out is None:
        raise ValueError("--resume needs --out (the run folder to continue)")
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out or Path("results") / f"bench-arimage-{'quick-' if quick else ''}{stamp}"
    command = shlex.join(["hasten", *sys.argv[1:]]) if Path(sys.argv[0]).name == "hasten" else shlex.join(sys.argv)
    chosen = None if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip())
    options = ArimageBenchOptions.make(out, quick=quick, resume=resume, command=command, models=names, methods=chosen)
    records = run_bench(options, progress=typer.echo)
    for name in names:
        typer.echo(f"\n{name}")
        for line in report_table(records, name):
            typer.echo(line)
    typer.echo(f"\nreport: {out / 'report.md'}")


def add_commands(app: typer.Typer) -> None:
    """Register ``bench-arimage`` on the hasten Typer app."""
    app.command("bench-arimage")(bench_arimage)
