"""The measurement loop of ``hasten bench-diffusion``.

Protocol, per suite and seed:

1. One uncached sampling call, untimed: warms the allocator and is the *reference* output
   every setting's fidelity is measured against (same seed, same noise).
2. The uncached record: the fastest of ``repeats`` further uncached calls.
3. Per setting: ``repeats`` pairs of calls, uncached and method, the order alternating
   from pair to pair (uncached first in even pairs, the method first in odd ones) so
   machine drift hits both alike. ``speedup`` = fastest uncached call / fastest method call
   of these pairs. Fidelity compares the method's first output with the reference;
   ``deterministic`` says whether all its repeats gave identical outputs.

Every record is written as one whole line as soon as it is measured (see
:mod:`.records`); ``resume`` skips records already on disk, so an interrupted run loses at
most the setting in progress. A setting that raises is recorded with its error and the run
goes on. Outputs of the first seed are saved under ``outputs/`` (``.npy``) for the sample
grid, which :func:`run_bench` draws at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...benchcore import (
    check_resume,
    interleaved_pairs,
    machine,
    progress_bar,
    speedup_of_fastest,
    utc_date,
    versions,
    write_meta,
)
from .records import RECORDS_FILE, RecordLog, encode, output_path, read_bench_records, record_key
from .registry import get_suite
from .report import render_report
from .suite import UNCACHED, DiffusionSuite, Setting, SuiteOutput

__all__ = ["BenchOptions", "run_bench", "measure_setting", "output_path", "UNCACHED_LABEL", "PROTOCOL_FIELDS"]
# output_path lives in .records (the run folder's layout) and is re-exported here

UNCACHED_LABEL = "-"
PROTOCOL_FIELDS = ("models", "quick", "seeds", "repeats")  # meta.json fields --resume must match


@dataclass(frozen=True)
class BenchOptions:
    """One ``hasten bench-diffusion`` run.

    Attributes:
        out: run folder (records.jsonl, meta.json, report.md, PNGs, outputs/).
        models: suite names, in report order.
        quick: reduced suites and settings (a few minutes).
        seeds: noise seeds; each setting is measured once per seed.
        repeats: timed (uncached, method) pairs per setting (>= 1). More = steadier
            speedups, longer run.
        resume: continue the run in ``out``, skipping finished records.
        progress: show a tqdm bar.
        command: recorded in meta.json and the report.

    Raises:
        ValueError: no models or seeds, or ``repeats < 1``.
    """

    out: Path
    models: tuple[str, ...] = ("digits-dit",)
    quick: bool = False
    seeds: tuple[int, ...] = (0,)
    repeats: int = 2
    resume: bool = False
    progress: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        if not self.models or not self.seeds:
            raise ValueError("need at least one model and one seed")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")


def measure_setting(
    suite: DiffusionSuite, setting: Setting, seed: int, reference: SuiteOutput, repeats: int
) -> tuple[dict[str, Any], SuiteOutput]:
    """Time ``setting`` against uncached in alternating pairs; return its record and first output.

    Raises:
        whatever ``suite.run`` raises.
    """
    uncached, runs = interleaved_pairs(
        lambda: suite.run(UNCACHED, None, seed), lambda: suite.run(setting.method, setting.config, seed), repeats
    )
    uncached_seconds = [r.seconds for r in uncached]
    first = runs[0]
    seconds = min(r.seconds for r in runs)
    record = {
        "model": suite.name,
        "method": setting.method,
        "setting": setting.label,
        "seed": seed,
        "seconds": seconds,
        "uncached_seconds": min(uncached_seconds),
        "speedup": speedup_of_fastest(uncached_seconds, [r.seconds for r in runs]),
        "skipped_fraction": first.skipped_fraction,
        "repeats": repeats,
        "deterministic": all(np.array_equal(first.output, r.output) for r in runs[1:]),
        **suite.fidelity(reference, first),
    }
    if first.extra:
        record["extra"] = dict(first.extra)
    return record, first


def _uncached_record(suite: DiffusionSuite, seed: int, reference: SuiteOutput, repeats: int) -> dict[str, Any]:
    timed = [suite.run(UNCACHED, None, seed) for _ in range(repeats)]
    seconds = min(r.seconds for r in timed)
    return {
        "model": suite.name,
        "method": UNCACHED,
        "setting": UNCACHED_LABEL,
        "seed": seed,
        "seconds": seconds,
        "uncached_seconds": seconds,
        "speedup": 1.0,
        "skipped_fraction": 0.0,
        "repeats": repeats,
        "deterministic": all(np.array_equal(reference.output, r.output) for r in timed),
        **suite.fidelity(reference, reference),
    }


def _save_output(path: Path, output: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, output)
    os.replace(tmp, path)


def _meta(options: BenchOptions, suites: Mapping[str, DiffusionSuite]) -> dict[str, Any]:
    return {
        "models": list(options.models),
        "quick": options.quick,
        "seeds": list(options.seeds),
        "repeats": options.repeats,
        "command": options.command,
        "suites": {
            name: {
                "describe": s.describe(),
                "metric_names": list(s.metric_names),
                "pareto_metrics": list(s.pareto_metrics),
                "higher_is_better": dict(s.higher_is_better),
            }
            for name, s in suites.items()
        },
        "machine": machine(cpu_name=False),
        "date": utc_date(),
        "versions": versions(),
    }


def _prepare(options: BenchOptions, meta: dict[str, Any]) -> list[dict[str, Any]]:
    check_resume(options.out, meta, options.resume, PROTOCOL_FIELDS, missing_differs=True)
    write_meta(options.out, meta)
    return read_bench_records(options.out / RECORDS_FILE) if options.resume else []


def run_bench(options: BenchOptions, suites: Mapping[str, DiffusionSuite] | None = None) -> Path:
    """Measure every setting of every suite and write records, meta.json and the report.

    Args:
        options: the run.
        suites: name -> suite to use instead of the registry's (tests pass tiny suites).

    Returns:
        the run folder.

    Raises:
        KeyError: an unknown model name. ValueError: records exist without ``resume``, or
        ``resume`` with a run of other models/seeds/repeats/quick. KeyboardInterrupt: after
        the report of what finished is written.
    """
    suites = dict(suites) if suites is not None else {n: get_suite(n, options.quick) for n in options.models}
    missing = [n for n in options.models if n not in suites]
    if missing:
        raise KeyError(f"no suite given for {missing}")
    done = {record_key(r) for r in _prepare(options, _meta(options, suites))}
    plan = {name: [s for s in suites[name].settings(options.quick)] for name in options.models}
    total = sum((len(plan[n]) + 1) * len(options.seeds) for n in options.models)
    resumed = sum(
        1
        for n in options.models
        for seed in options.seeds
        for method, label in [(UNCACHED, UNCACHED_LABEL)] + [(s.method, s.label) for s in plan[n]]
        if (n, method, label, seed) in done
    )
    try:
        with (
            RecordLog(options.out / RECORDS_FILE) as log,
            progress_bar(total, resumed, enabled=options.progress, unit="setting", desc="bench-diffusion") as bar,
        ):
            for name in options.models:
                for seed in options.seeds:
                    _run_seed(suites[name], plan[name], seed, options, done, log, bar)
    finally:
        render_report(options.out, suites)
    return options.out


def _run_seed(
    suite: DiffusionSuite,
    settings: Sequence[Setting],
    seed: int,
    options: BenchOptions,
    done: set[tuple[str, str, str, int]],
    log: RecordLog,
    bar: Any,
) -> None:
    todo = [s for s in settings if (suite.name, s.method, s.label, seed) not in done]
    uncached_done = (suite.name, UNCACHED, UNCACHED_LABEL, seed) in done
    if not todo and uncached_done:
        return
    keep = seed == options.seeds[0]
    reference = suite.run(UNCACHED, None, seed)
    if keep:
        _save_output(output_path(options.out, suite.name, UNCACHED, UNCACHED_LABEL), reference.output)
    if not uncached_done:
        log.append(encode(_uncached_record(suite, seed, reference, options.repeats)))
        bar.update(1)
    for setting in todo:
        bar.set_postfix_str(f"{suite.name} {setting.method} {setting.label}"[:60])
        try:
            record, first = measure_setting(suite, setting, seed, reference, options.repeats)
        except Exception as err:  # recorded, and the run goes on; KeyboardInterrupt is not caught
            record, first = (
                {
                    "model": suite.name,
                    "method": setting.method,
                    "setting": setting.label,
                    "seed": seed,
                    "error": f"{type(err).__name__}: {err}",
                },
                None,
            )
        if keep and first is not None:
            _save_output(output_path(options.out, suite.name, setting.method, setting.label), first.output)
        log.append(encode(record))
        bar.update(1)
